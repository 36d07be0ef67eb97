"""OpenVINO routes: edgeconv's ONNX route (source → ONNX → normalise → `openvino.convert_model`) against the direct
routes OpenVINO has for the source itself, on corpus models (tests/corpus):

- PyTorch .pt2: `openvino.convert_model(ExportedProgram)` (OpenVINO's torch.export front end) and
  `openvino.convert_model(module, example_input=...)` (the model's nn.Module class with the program's weights, traced
  by OpenVINO's TorchScript path); TorchScript .pt: `openvino.convert_model(ScriptModule, example_input=...)`;
- Keras: `openvino.convert_model(keras_model)` (the in-memory model) and, for a SavedModel folder,
  `openvino.convert_model("dir")`.

Per route: did it convert and compile; SNR vs the source (the source framework's outputs on the model's 32 eval
samples; the minimum over float outputs, as edgeconv validation reports) for the fp32 IR and for int8 by one plain
`nncf.quantize` on the same 64 calibration samples with edgeconv's first-attempt settings (preset performance, fast
bias correction, ModelType.TRANSFORMER when the graph has attention: no fallback, so the route is what differs);
OpenVINO CPU p50 latency (`edgeconv bench`, batch 1, --runs after 10 warm-up runs, latency hint, f32 inference
precision); IR size (.xml + .bin). Direct IRs are reshaped to the samples' static shapes, as the ONNX route's are.

    .venv/bin/python bench/bench_openvino_routes.py [--models resnet,vit_tiny] [--runs 200]

Each model runs in its own process (PyTorch and TensorFlow never share one). Results: bench/results/openvino_routes.json
and a markdown table on stdout (pasted into bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["EDGECONV_NO_CACHE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

MODELS = ["resnet", "mobilenetv3", "vit_tiny", "bert_tiny", "yolo", "crnn", "ts_scripted_control", "keras_mobilenetv2",
          "keras_savedmodel"]
RESULTS = REPO / "bench" / "results" / "openvino_routes.json"


def _ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:160]}"


TORCH_CLASSES = {"resnet": "ResNet", "mobilenetv2": "MobileNetV2", "mobilenetv3": "MobileNetV3Small",
                 "efficientnet": "EfficientNetB0", "convnext": "ConvNeXt", "vit_tiny": "ViTTiny", "yolo": "YoloLite",
                 "unet": "UNet", "crnn": "CRNN", "bert_tiny": "BertClassifier"}


def torch_module(name: str, program: object) -> object:
    """The corpus model's nn.Module class (tests/corpus/torch_models.py) with the .pt2's weights and buffers: what a
    user holding the model's code would hand to convert_model. Else the program's own module (a GraphModule)."""
    from tests.corpus import torch_models

    if name not in TORCH_CLASSES:
        return program.module()
    module = getattr(torch_models, TORCH_CLASSES[name])()
    state = dict(program.state_dict)
    state.update({k: v for k, v in program.constants.items() if k in module.state_dict()})
    module.load_state_dict(state, strict=True)
    return module.eval()


def direct_routes(folder: Path, meta: dict, samples: list[dict[str, np.ndarray]], names: list[str]) -> dict:
    """{route label: a function returning an ov.Model} for the direct routes this source has."""
    import openvino as ov

    path = folder / meta["file"]
    routes = {}
    if path.suffix == ".pt2":
        import torch

        def exported() -> object:
            return ov.convert_model(torch.export.load(str(path)))

        def module() -> object:  # the user's nn.Module: the corpus class with the program's weights
            program = torch.export.load(str(path))
            example = tuple(torch.from_numpy(samples[0][n]) for n in names)
            return ov.convert_model(torch_module(meta["name"], program), example_input=example)

        routes["direct: convert_model(ExportedProgram)"] = exported
        routes["direct: convert_model(nn.Module, example_input)"] = module
    elif path.suffix == ".pt":  # TorchScript: OpenVINO's TorchScript front end takes the ScriptModule itself
        import torch

        def scripted() -> object:
            example = tuple(torch.from_numpy(samples[0][n]) for n in names)
            return ov.convert_model(torch.jit.load(str(path), map_location="cpu").eval(), example_input=example)

        routes["direct: convert_model(ScriptModule, example_input)"] = scripted
    else:
        import keras

        if path.is_dir():  # a SavedModel folder: the path itself, and the Keras-loaded object
            routes["direct: convert_model(SavedModel dir)"] = lambda: ov.convert_model(str(path))
        else:
            def keras_model() -> object:
                return ov.convert_model(keras.saving.load_model(str(path), compile=False))

            routes["direct: convert_model(keras.Model)"] = keras_model
    return routes


def one_model(name: str, root: Path, work: Path, runs: int) -> dict:
    """All routes of one corpus model (in this process)."""
    from edgeconv.targets.openvino._offline import no_telemetry

    no_telemetry()
    import nncf
    import openvino as ov

    from edgeconv.benchmark import benchmark
    from edgeconv.context import ConvertOptions, StepContext
    from edgeconv.formats import detect
    from edgeconv.quantizers.calibration import open_samples
    from edgeconv.runtimes import runtime_for_source
    from edgeconv.targets import resolve
    from edgeconv.targets.openvino.onnx_to_openvino import is_transformer, quiet
    from edgeconv.targets.openvino.options import OpenVinoOptions
    from edgeconv.targets.openvino.runtime import OpenVinoSession, compile_model
    from edgeconv.validation import compare
    from tests.corpus.registry import read_meta
    from tests.helpers import convert, model_path

    folder = root / name
    meta = read_meta(folder) or {}
    shapes = {k: tuple(v) for k, v in meta.get("input_shapes", {}).items()}
    options = ConvertOptions(input_shapes=shapes, calib=str(folder / "calib"), eval=str(folder / "eval"))
    from edgeconv.sources import open_source

    source = open_source(detect(folder / meta["file"]), options)
    if shapes:
        source = source.with_shapes(shapes)
    eval_set = list(open_samples(str(folder / "eval"), source.inputs, 32, purpose="validation"))
    calib_set = list(open_samples(str(folder / "calib"), source.inputs, 64))
    names = [s.name for s in source.inputs]
    ctx = StepContext(work, resolve("openvino-fp32"), options, source)
    session = runtime_for_source(source.artifact.format)().load(source.artifact, ctx)
    references = [session.run(feeds) for feeds in eval_set]
    out_names = list(source.output_names) or [f"output_{i}" for i in range(len(references[0]))]
    ov_options = OpenVinoOptions()

    def measure(label: str, model: object, seconds: float) -> dict:
        row: dict = {"model": name, "route": label, "convert_s": round(seconds, 2)}
        try:
            ports = list(model.inputs)
            if any(p.get_partial_shape().is_dynamic for p in ports):  # static, as the ONNX route's IR is
                by_port = dict(zip(range(len(ports)), [eval_set[0][n].shape for n in names]))
                model.reshape({ports[i]: ov.PartialShape(list(s)) for i, s in by_port.items()})
            xml = work / f"{label.split(':')[0].replace(' ', '_')}-{len(os.listdir(work))}" / f"{name}.xml"
            xml.parent.mkdir(parents=True)
            ov.save_model(model, str(xml), compress_to_fp16=False)
            row["fp32_kib"] = round(_ir_bytes(xml) / 1024, 1)
            fp32 = ov.Core().read_model(str(xml))
            run = OpenVinoSession(compile_model(fp32, ov_options), source.inputs)
            row["fp32_snr_db"] = round(compare(out_names, references, [run.run(f) for f in eval_set]).snr_db, 2)
            lat = benchmark(xml, runs=runs, warmup=10).latency_ms
            row["fp32_ms"], row["fp32_min_ms"] = lat["p50"], lat["min"]
        except Exception as e:  # noqa: BLE001 - a route that converts but does not compile / run is a result
            row["error"] = f"fp32: {_first_line(e)}"
            return row
        try:
            from edgeconv.targets.openvino.runtime import match_inputs

            order = match_inputs(list(fp32.inputs), source.inputs)
            calibration = nncf.Dataset([{i: f[n] for i, n in enumerate(order)} for f in calib_set])
            transformer = is_transformer(fp32)
            started = time.perf_counter()
            with quiet():
                quantized = nncf.quantize(ov.Core().read_model(str(xml)), calibration, subset_size=len(calib_set),
                                          preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True,
                                          model_type=nncf.ModelType.TRANSFORMER if transformer else None)
            row["int8_quantize_s"] = round(time.perf_counter() - started, 1)
            row["model_type"] = "transformer" if transformer else "default"
            int8_xml = xml.with_name(f"{name}-int8.xml")
            ov.save_model(quantized, str(int8_xml), compress_to_fp16=False)
            row["int8_kib"] = round(_ir_bytes(int8_xml) / 1024, 1)
            run8 = OpenVinoSession(compile_model(quantized, ov_options), source.inputs)
            row["int8_snr_db"] = round(compare(out_names, references, [run8.run(f) for f in eval_set]).snr_db, 2)
            lat = benchmark(int8_xml, runs=runs, warmup=10).latency_ms
            row["int8_ms"], row["int8_min_ms"] = lat["p50"], lat["min"]
            row["fake_quantize"] = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
        except Exception as e:  # noqa: BLE001
            row["error"] = f"int8: {_first_line(e)}"
        return row

    rows = []
    # edgeconv's ONNX route: `edgeconv convert -t openvino-fp32`, its IR read back
    started = time.perf_counter()
    try:
        manifest = convert(folder / meta["file"], ["openvino-fp32"], work / "edgeconv", **{
            "input_shapes": shapes, "calib": str(folder / "calib"), "eval": str(folder / "eval")})
        seconds = time.perf_counter() - started
        xml = model_path(manifest, work / "edgeconv", "openvino-fp32")
        rows.append(measure("ONNX (edgeconv default)", ov.Core().read_model(str(xml)), seconds))
    except Exception as e:  # noqa: BLE001
        rows.append({"model": name, "route": "ONNX (edgeconv default)", "error": f"convert: {_first_line(e)}"})
    for label, build in direct_routes(folder, meta, eval_set, names).items():
        started = time.perf_counter()
        try:
            with quiet():
                model = build()
        except Exception as e:  # noqa: BLE001
            rows.append({"model": name, "route": label, "error": f"convert: {_first_line(e)}"})
            continue
        rows.append(measure(label, model, time.perf_counter() - started))
    return {"model": name, "source": meta.get("source", ""), "rows": rows}


def table(results: list[dict]) -> str:
    def cell(row: dict, key: str, fmt: str = "{}") -> str:
        return fmt.format(row[key]) if key in row else "–"

    lines = ["| model (source) | route | fp32 SNR dB | int8 SNR dB | fp32 ms | int8 ms | fp32 KiB | int8 KiB | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        for row in result["rows"]:
            note = row.get("error", "")
            lines.append(f"| {row['model']} ({result['source']}) | {row['route']} | {cell(row, 'fp32_snr_db', '{:.1f}')} | "
                         f"{cell(row, 'int8_snr_db', '{:.1f}')} | {cell(row, 'fp32_ms', '{:.3f}')} | "
                         f"{cell(row, 'int8_ms', '{:.3f}')} | {cell(row, 'fp32_kib', '{:.1f}')} | "
                         f"{cell(row, 'int8_kib', '{:.1f}')} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # worker: one model, JSON on stdout
    parser.add_argument("--table", action="store_true", help="print the table of the saved results only")
    args = parser.parse_args()
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    if args.one:
        with tempfile.TemporaryDirectory(prefix="edgeconv-ov-routes-") as tmp:
            print("@@" + json.dumps(one_model(args.one, ROOT, Path(tmp), args.runs)))
        return
    if args.table:
        print(table(json.loads(RESULTS.read_text())["results"]))
        return
    names = args.models.split(",")
    errors = registry.ensure(ROOT, names)
    results = []
    saved = {r["model"]: r for r in json.loads(RESULTS.read_text())["results"]} if RESULTS.exists() else {}
    for name in names:
        if name in errors:
            results.append({"model": name, "source": "", "rows": [{"model": name, "route": "–",
                                                                    "error": f"corpus build failed: {errors[name][:100]}"}]})
            continue
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--runs", str(args.runs)], capture_output=True,
                              text=True, cwd=REPO, timeout=3600)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
        if line is None:
            results.append({"model": name, "source": "", "rows": [{"model": name, "route": "–",
                                                                    "error": f"worker exit {proc.returncode}: "
                                                                             f"{proc.stderr.strip()[-200:]}"}]})
        else:
            results.append(json.loads(line[2:]))
        saved[name] = results[-1]
        print(f"{name}: done", file=sys.stderr)
    import openvino
    import nncf

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"openvino": openvino.__version__, "nncf": nncf.__version__, "runs": args.runs,
                                   "cores": os.cpu_count(), "results": list(saved.values())}, indent=1) + "\n")
    print(f"OpenVINO {openvino.__version__}, NNCF {nncf.__version__}; `edgeconv bench` p50 of {args.runs} runs "
          f"(batch 1, {os.cpu_count()} cores); one run.\n")
    print(table(results))


if __name__ == "__main__":
    main()
