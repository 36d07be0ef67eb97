"""Quantization benchmark: for each test model, fp32 vs int8 — file size ratio, ONNX Runtime CPU latency ratio, output
SNR and task agreement — for edgeconv (`cpu-int8`: normalise → QDQ u8/s8 per-channel → checks → accuracy-driven
fallback) and for ONNX Runtime's `quantize_static` with its default settings on the same model and the same
calibration samples. One markdown table.

    .venv/bin/python bench/bench_quant.py [--runs 100] [--threads 1]

Models (built here, no downloads):
- digits CNN (PyTorch → ONNX), trained on scikit-learn digits; evaluated on the 450 held-out images (agreement =
  top-1 agreement with fp32; accuracy shown too)
- pitfall CNN, width 32 and 128 (tests/quantizers/pitfall_models.py), trained here on 3-channel digits: opset 11,
  Constant-node weights, unfused BatchNorm, Shape→Gather→Concat→Reshape flatten, dynamic batch — what paddle2onnx /
  old exporters write. Width 128 (~10 M MACs, 5.9 MB) is the one whose latency means something.
- outlier CNN: one activation channel ~1000x the others (LayerNorm / detector-head style): needs mixed precision
Targets (issue 3): size <= 0.28x, latency <= 0.6x, agreement >= 99% where the default pipeline loses it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# stage times, not stage-cache hits (bench_stage_cache.py measures those)
os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
logging.disable(logging.WARNING)  # ORT's quantizer warns about pre-processing on every call


def save_samples(folder: Path, arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", a[None].astype(np.float32))
    return folder


def build_models(root: Path) -> list[dict[str, Any]]:
    import model_zoo
    import torch

    from quantizers.pitfall_models import outlier_cnn, pitfall_cnn

    models = []
    split = model_zoo.digits_split()
    net = model_zoo.digits_cnn(split)
    digits = root / "digits_cnn.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(net, (torch.from_numpy(split.x_test[:1]),), str(digits), input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    models.append({"name": "digits CNN (trained, 1x1x8x8)", "path": digits, "input": "image",
                   "calib": split.x_train[:64], "eval": split.x_test, "labels": split.y_test, "kind": "classes"})
    from quantizers.pitfall_models import digits_images, train_pitfall_weights

    x_train, _, x_test, y_test = digits_images(8)
    for width in (32, 128):
        weights = train_pitfall_weights(width=width, hw=8, epochs=4)
        path = pitfall_cnn(root / f"pitfall_w{width}.onnx", width=width, hw=8, weights=weights)
        macs = (3 * width * 9 * 64 + width * 2 * width * 9 * 16 + 2 * width * 4 * width * 9 * 4) / 1e6
        models.append({"name": f"pitfall CNN w{width} (trained, 1x3x8x8, {macs:.1f} M MACs; opset 11, Constant W, BN, shape ops)",
                       "path": path, "input": "input", "calib": x_train[:64], "eval": x_test, "labels": y_test,
                       "kind": "classes"})
    rng = np.random.default_rng(0)
    models.append({"name": "outlier CNN (1x3x16x16, 1000x channel)", "path": outlier_cnn(root / "outlier.onnx"),
                   "input": "input", "calib": rng.uniform(0, 1, (64, 3, 16, 16)),
                   "eval": rng.uniform(0, 1, (64, 3, 16, 16)), "kind": "features",
                   "variants": [("edgeconv cpu-int8, gate min_snr_db=30", ("validate.gate.min_snr_db=30",))]})
    for m in models:
        m["calib_dir"] = save_samples(root / (m["path"].stem + "_calib"), m["calib"])
        m["eval_dir"] = save_samples(root / (m["path"].stem + "_eval"), m["eval"][:32])
    return models


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_run_ms(s: Any, feed: dict[str, np.ndarray], runs: int) -> float:
    """Median wall time of one `s.run` on `feed` after 5 warm-up runs, in ms (bench_quant_peers.py uses it too)."""
    for _ in range(5):
        s.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def latency_ms(path: Path, x: np.ndarray, name: str, runs: int, threads: int) -> float:
    return median_run_ms(session(path, threads), {name: x[:1].astype(np.float32)}, runs)


def outputs(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    s = session(path, 1)
    return np.concatenate([s.run(None, {name: x[i : i + 1].astype(np.float32)})[0] for i in range(len(x))])


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(((ref.astype(np.float64) - got) ** 2).sum())
    return 300.0 if noise == 0 else 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / noise)


def agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Top-1 over classes; for feature maps, the arg-max channel at every position."""
    return float((ref.argmax(axis=1) == got.argmax(axis=1)).mean())


def ort_default(m: dict[str, Any], out: Path) -> tuple[Path | None, str]:
    from onnxruntime.quantization import quantize_static

    feeds = iter([{m["input"]: x[None].astype(np.float32)} for x in m["calib"]])

    class Reader:
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    try:
        quantize_static(str(m["path"]), str(out), Reader())
    except Exception as e:  # noqa: BLE001 - reported in the table
        return None, f"failed: {type(e).__name__}"
    return out, ""


def edgeconv_int8(m: dict[str, Any], out: Path, overrides: tuple[str, ...] = ()) -> tuple[Path | None, str]:
    from edgeconv.context import ConvertOptions
    from edgeconv.errors import EdgeconvError
    from edgeconv.formats import detect
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    options = ConvertOptions(calib=str(m["calib_dir"]), eval=str(m["eval_dir"]), overrides=overrides)
    try:
        manifest = run(build_plan(detect(m["path"]), [resolve("cpu-int8")], options), out, force=True).to_json()
    except EdgeconvError as e:
        return None, f"exit {e.exit_code}: {e.message[:60]}"
    record = manifest["targets"][0]
    art = next(a for a in record["artifacts"] if a["role"] == "model")
    fb = (record["notes"]["quantize"].get("fallback") or {}).get("nodes") or []
    how = ["weights too" if n.get("nodes") else "activation only" for n in fb]
    note = f"{len(fb)} layer(s) kept fp32 ({', '.join(how)})" if fb else ""
    return out / art["path"], note


def valid(path: Path) -> bool:
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)))
        session(path, 1)
        return True
    except Exception:  # noqa: BLE001
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for m in build_models(root):
            x, name = m["eval"], m["input"]
            ref = outputs(m["path"], x, name)
            fp32_ms = latency_ms(m["path"], x, name, args.runs, args.threads)
            fp32_bytes = m["path"].stat().st_size
            acc = f" (acc {np.mean(ref.argmax(1) == m['labels']):.3f})" if "labels" in m else ""
            rows.append((m["name"], f"fp32{acc}", f"{fp32_bytes / 1024:.0f} KB", "1.000", f"{fp32_ms:.3f} ms", "1.00",
                         "—", "—", "yes", ""))
            stem = m["path"].stem
            runs = [("ORT quantize_static defaults", lambda o: ort_default(m, o), root / f"{stem}_ort_default.onnx"),
                    ("edgeconv cpu-int8", lambda o: edgeconv_int8(m, o), root / f"{stem}_edgeconv")]
            for label, overrides in m.get("variants", ()):
                runs.append((label, lambda o, ov=overrides: edgeconv_int8(m, o, ov), root / f"{stem}_{len(runs)}"))
            for label, fn, out in runs:
                path, note = fn(out)
                if path is None:
                    rows.append((m["name"], label, "—", "—", "—", "—", "—", "—", "—", note))
                    continue
                ok = valid(path)
                got = outputs(path, x, name) if ok else None
                q_ms = latency_ms(path, x, name, args.runs, args.threads) if ok else float("nan")
                acc = f" (acc {np.mean(got.argmax(1) == m['labels']):.3f})" if ok and "labels" in m else ""
                rows.append((m["name"], label + acc, f"{path.stat().st_size / 1024:.0f} KB",
                             f"{path.stat().st_size / fp32_bytes:.3f}", f"{q_ms:.3f} ms", f"{q_ms / fp32_ms:.2f}",
                             f"{snr_db(ref, got):.1f}" if ok else "—", f"{100 * agreement(ref, got):.1f}%" if ok else "—",
                             "yes" if ok else "**no**", note))
    print(f"ONNX Runtime CPU, {args.threads} thread(s), batch 1, median of {args.runs} runs\n")
    print("| model | quantizer | size | size ratio | latency | latency ratio | SNR dB | agreement | valid | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
