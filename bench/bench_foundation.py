"""Foundation benchmark: time of each edgeconv stage (export, normalise, validate, write) for the test models, next to
the bare library call that does the export (torch.onnx.export / tf2onnx) — measured in the same run.

    .venv/bin/python bench/bench_foundation.py            # prints a markdown table
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# stage times, not stage-cache hits (bench_stage_cache.py measures those)
os.environ["EDGECONV_NO_CACHE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))



import model_zoo  # noqa: E402


REPEATS = 3


def _edgeconv(source: Path, out: Path, shapes: dict | None = None) -> tuple[float, dict[str, float]]:
    from edgeconv.context import ConvertOptions
    from edgeconv.formats import detect
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    started = time.perf_counter()
    plan = build_plan(detect(source), [resolve("onnx")], ConvertOptions(input_shapes=shapes or {}))
    manifest = run(plan, out, force=True).to_json()
    total = time.perf_counter() - started
    steps = {s["kind"]: s["seconds"] for s in manifest["targets"][0]["steps"]}
    return total, steps


def _bare_torch(module, example, out: Path) -> float:
    import torch

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, example, str(out), opset_version=17, dynamo=True)
    return time.perf_counter() - started


def _bare_keras(model, out: Path) -> float:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((1, 8, 8, 1), tf.float32, name="image")]
    started = time.perf_counter()
    tf2onnx.convert.from_function(tf.function(lambda image: model(image)), input_signature=spec, opset=17,
                                  output_path=str(out))
    return time.perf_counter() - started


def _bare_slim(path: Path) -> float:
    import onnxslim

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        onnxslim.slim(str(path), input_shapes=["input:1,3,16,16"])
    return time.perf_counter() - started


def main() -> None:
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        split = model_zoo.digits_split()
        cnn = model_zoo.digits_cnn(split, epochs=2)
        x = torch.from_numpy(split.x_test[:1])
        torch.export.save(torch.export.export(cnn, (x,)), str(tmp / "digits.pt2"))
        block = model_zoo.transformer_block()
        tokens = torch.randn(1, 16, 32)
        torch.export.save(torch.export.export(block, (tokens,)), str(tmp / "transformer.pt2"))
        keras_model = model_zoo.keras_digits_cnn(split, epochs=1)
        keras_model.save(tmp / "digits.keras")
        messy = model_zoo.messy_onnx(tmp / "messy.onnx")

        _bare_torch(cnn, (x,), tmp / "warm.onnx")  # warm the exporter once (first call pays imports)
        cases = [
            ("digits CNN (torch .pt2)", tmp / "digits.pt2", None, lambda: _bare_torch(cnn, (x,), tmp / "b1.onnx")),
            ("transformer block (torch .pt2)", tmp / "transformer.pt2", None, lambda: _bare_torch(block, (tokens,), tmp / "b2.onnx")),
            ("digits CNN (Keras)", tmp / "digits.keras", None, lambda: _bare_keras(keras_model, tmp / "b3.onnx")),
            ("messy ONNX (opset 11)", messy, {"input": (1, 3, 16, 16)}, lambda: _bare_slim(messy)),
        ]
        for label, source, shapes, bare in cases:
            bare_times, runs = [], []
            for _ in range(REPEATS):  # alternate the two so neither gets the other's warm caches for free; keep the best
                bare_times.append(bare())
                runs.append(_edgeconv(source, tmp / f"out-{source.stem}", shapes))
            total, steps = min(runs, key=lambda r: r[0])
            rows.append((label, steps.get("export", 0.0), steps.get("normalise", 0.0), total, min(bare_times)))

    print("| model | export s | normalise s | edgeconv total s (load+export+normalise+validate+write) | bare export call s | total / bare |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, export, norm, total, bare in rows:
        print(f"| {label} | {export:.2f} | {norm:.2f} | {total:.2f} | {bare:.2f} | {total / bare:.1f}× |")
    print(f"\nbest of {REPEATS} alternating runs each")
    print("(bare call for the messy ONNX row: onnxslim.slim alone, the core of the normalise stage)")



if __name__ == "__main__":
    main()
