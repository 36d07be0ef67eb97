"""TensorRT targets: what each tensorrt-* profile produces and costs.

    .venv/bin/python bench/bench_tensorrt.py [--runs 100]

CPU section (any machine): time to produce the TensorRT-ready ONNX (normalise + quantize + TensorRT checks), its size,
Q/DQ node count, accuracy vs the float source on ONNX Runtime, and ORT-CPU latency of that ONNX (int8/fp16 vs fp32).
GPU section (NVIDIA GPU + tensorrt only, else skipped with the reason): engine build time (cold / with the timing cache),
engine size, TensorRT latency p50 and the accuracy of the engine vs the source.

Models (built here, no downloads): the digits CNN trained on scikit-learn digits (1x1x8x8), and a residual CNN with
random weights (1x3x64x64, 32 channels, 4 residual blocks) for latencies that mean something.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# stage times, not stage-cache hits (bench_stage_cache.py measures those)
os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

TARGETS = ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]


def digits_onnx(folder: Path) -> tuple[Path, Path]:
    import torch

    import model_zoo

    split = model_zoo.digits_split()
    model = model_zoo.digits_cnn(split)
    path = folder / "digits_cnn.onnx"
    torch.onnx.export(model, (torch.from_numpy(split.x_test[:1]),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    return path, save(folder / "digits_calib", split.x_train[:64])


def residual_cnn(folder: Path, channels: int = 32, blocks: int = 4, size: int = 64) -> tuple[Path, Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(name: str, x: str, cin: int, cout: int, relu: bool) -> str:
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_out"], pads=[1, 1, 1, 1], name=name))
        if not relu:
            return f"{name}_out"
        nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"))
        return f"{name}_relu"

    x = conv("stem", "input", 3, channels, True)
    for b in range(blocks):
        h = conv(f"b{b}c1", x, channels, channels, True)
        h = conv(f"b{b}c2", h, channels, channels, False)
        nodes.append(helper.make_node("Add", [h, x], [f"b{b}_add"], name=f"b{b}_add"))
        nodes.append(helper.make_node("Relu", [f"b{b}_add"], [f"b{b}_out"], name=f"b{b}_out"))
        x = f"b{b}_out"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits += [numpy_helper.from_array(rng.normal(0, 0.2, (10, channels)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"))
    graph = helper.make_graph(nodes, "residual_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    path = folder / "residual_cnn.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path, save(folder / "residual_calib", rng.uniform(0, 1, (32, 3, size, size)))


def save(folder: Path, arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", a[None].astype(np.float32))
    return folder


def ort_latency_ms(path: Path, runs: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).uniform(0, 1, [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in session.get_inputs()}
    for _ in range(10):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run_targets(source: Path, calib: Path, out: Path) -> dict:
    from tests.helpers import convert

    return convert(source, TARGETS, out, calib=str(calib), eval=str(calib))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    from edgeconv.targets.tensorrt._tools import detect_gpu, why_no_engine
    from tests.helpers import model_path, target_record

    no_engine = why_no_engine()
    cpu_rows, gpu_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, (source, calib) in [("digits CNN 1x1x8x8", digits_onnx(folder)),
                                       ("residual CNN 1x3x64x64", residual_cnn(folder))]:
            started = time.perf_counter()
            manifest = run_targets(source, calib, folder / f"out-{source.stem}")
            total = time.perf_counter() - started
            base_ms = None
            for name in TARGETS:
                record = target_record(manifest, name)
                onnx_path = model_path(manifest, folder / f"out-{source.stem}", name, "onnx")
                prep = sum(s["seconds"] for s in record["steps"] if s["kind"] in ("normalise", "quantize"))
                notes = record["notes"]["tensorrt"]
                ms = ort_latency_ms(onnx_path, args.runs)
                base_ms = base_ms or ms
                metrics = record["validation"]["metrics"]
                qdq = notes["onnx"]["qdq"]
                cpu_rows.append(f"| {label} | {name} | {prep:.2f} | {onnx_path.stat().st_size / 1024:.1f} | "
                                f"{qdq['QuantizeLinear'] + qdq['DequantizeLinear']} | {metrics['snr_db']:.1f} | "
                                f"{metrics.get('top1_agreement') or 0:.3f} | {ms:.3f} | {base_ms / ms:.2f}× | {notes['engine']} |")
                if no_engine is None:
                    vs = notes["vs_onnxruntime"]
                    gpu_rows.append(f"| {label} | {name} | {notes['build_s']:.1f} | {notes['engine_bytes'] / 1024:.1f} | "
                                    f"{vs['latency']['p50_ms']:.4f} | {metrics['snr_db']:.1f} | {vs['metrics']['snr_db']:.1f} |")
            print(f"<!-- {label}: edgeconv convert for the three targets took {total:.1f} s -->")
    print("### CPU: the TensorRT-ready ONNX (ONNX Runtime CPU, 1 thread)\n")
    print("| model | target | normalise+quantize s | ONNX KiB | Q/DQ nodes | SNR vs source dB | top-1 agreement | "
          "ORT p50 ms | speed-up vs fp32 | engine |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(cpu_rows))
    print()
    if no_engine is not None:
        print(f"### GPU: skipped — {no_engine}")
        return
    gpu = detect_gpu()
    print(f"### GPU: TensorRT engines on {gpu.name} (compute {gpu.compute_capability}, driver {gpu.driver_version})\n")
    print("| model | target | build s | engine KiB | TensorRT p50 ms | SNR vs source dB | SNR vs ORT dB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(gpu_rows))


if __name__ == "__main__":
    main()
