"""Core ML: conversion time and size per coreml-* profile, for the digits CNN (PyTorch .pt2 and Keras) and the
transformer block (PyTorch .pt2).

    .venv/bin/python bench/bench_coreml.py [--skip-keras]

Each row is one edgeconv target run in-process through the real pipeline (convert → compress → save → check).
"convert s" is the torch_to_coreml / keras_to_coreml step (ct.convert + compression + save), "total s" the whole
target including the validation check. Sizes: the .mlpackage directory and its weight blob; "weights vs fp32" is the
blob against the same weights in float32; "weight SNR" is the worst compressed weight against itself before
compression (dB). "output SNR" is the outputs against the source on the held-out samples: Core ML on macOS; on Linux
(no Core ML runtime, structural check) the NumPy MIL reference execution, marked "(ref)". w8a8 rows: PyTorch fake-quant proxy SNR (int8 activations vs float, held-out samples).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import warnings
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

PROFILES = ["coreml-fp32", "ane-fp16", "coreml-w8", "coreml-palettize6", "coreml-palettize4", "coreml-w8a8"]


def _save(folder: Path, arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", a[None].astype(np.float32))
    return folder


def build_models(root: Path, keras: bool) -> list[tuple[str, Path, dict]]:
    """(label, source, convert options) — trained digits models and the transformer block from tests/model_zoo."""
    import torch

    import model_zoo

    split = model_zoo.digits_split()
    digits = model_zoo.digits_cnn(split)
    x = torch.from_numpy(split.x_test[:1]).contiguous()
    torch.export.save(torch.export.export(digits, (x,)), str(root / "digits.pt2"))
    torch.save(digits.state_dict(), str(root / "digits.state.pt"))
    calib, evals = _save(root / "calib", split.x_train[:64]), _save(root / "eval", split.x_test[:64])
    block = model_zoo.transformer_block()
    t = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(block, (t,)), str(root / "transformer.pt2"))
    rng = np.random.default_rng(1)
    t_calib, t_eval = _save(root / "t_calib", rng.standard_normal((32, 16, 32))), _save(root / "t_eval", rng.standard_normal((16, 16, 32)))
    rows = [("digits CNN (torch .pt2)", root / "digits.pt2", {"calib": str(calib), "eval": str(evals)}),
            ("digits CNN (torch factory, w8a8)", root / "digits.state.pt",
             {"calib": str(calib), "eval": str(evals), "model_factory": "model_zoo:digits_architecture",
              "weights": root / "digits.state.pt", "input_shapes": {"image": (1, 1, 8, 8)}}),
            ("transformer block (torch .pt2)", root / "transformer.pt2", {"calib": str(t_calib), "eval": str(t_eval)})]
    if keras:
        model = model_zoo.keras_digits_cnn(split)
        model.save(root / "digits.keras")
        k_calib = _save(root / "k_calib", split.x_train[:64].transpose(0, 2, 3, 1))
        k_eval = _save(root / "k_eval", split.x_test[:64].transpose(0, 2, 3, 1))
        rows.append(("digits CNN (Keras)", root / "digits.keras", {"calib": str(k_calib), "eval": str(k_eval)}))
    return rows


def run_one(source: Path, profile: str, options: dict, out: Path) -> tuple[float, dict | str]:
    from edgeconv.context import ConvertOptions
    from edgeconv.errors import EdgeconvError
    from edgeconv.formats import TORCH_FACTORY, Artifact, Format, detect
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    artifact = Artifact(source, Format.TORCH, TORCH_FACTORY) if "model_factory" in options else detect(source)
    started = time.perf_counter()
    try:
        plan = build_plan(artifact, [resolve(profile)], ConvertOptions(**options))
        manifest = run(plan, out, force=True).to_json()
    except EdgeconvError as e:
        if "calibrated by running the model with Core ML" in e.message:
            return time.perf_counter() - started, f"exit {e.exit_code}: activations calibrate on the Core ML runtime (macOS)"
        return time.perf_counter() - started, f"exit {e.exit_code}: {e.message[:90]}"
    return time.perf_counter() - started, manifest["targets"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-keras", action="store_true", help="leave the Keras rows out (TensorFlow start-up)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.chdir(REPO / "tests")  # `model_zoo:digits_architecture` is imported from the cwd
    from edgeconv.targets.coreml._loader import coremltools

    coremltools()  # import once (≈8 s: it imports TensorFlow and torch) so that the first row is not charged for it
    print("| model | target | convert s | total s | .mlpackage KiB | weights KiB | weights vs fp32 | weight SNR dB (min) | "
          "check | output SNR dB | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, source, options in build_models(root, keras=not args.skip_keras):
            profiles = ["coreml-w8a8"] if "model_factory" in options else PROFILES
            for profile in profiles:
                total, record = run_one(source, profile, options, root / "out" / profile)
                if isinstance(record, str):
                    print(f"| {label} | {profile} | — | {total:.2f} | — | — | — | — | — | — | {record} |")
                    continue
                notes = record["notes"].get("coreml", {})
                step = next((s["seconds"] for s in record["steps"] if s["name"].endswith("_to_coreml")), float("nan"))
                validation = record["validation"]
                snr = (notes.get("weight_snr_db") or {}).get("min")
                metrics = validation.get("metrics") or {}
                reference = (validation.get("checks") or {}).get("mil_reference") or {}
                if "snr_db" in metrics:
                    out_snr = f"{metrics['snr_db']:.1f}"
                elif reference.get("ran"):
                    out_snr = f"{reference['metrics']['snr_db']:.1f} (ref)"
                else:
                    out_snr = "—"
                proxy = record["notes"].get("pytorch_fake_quant_proxy")
                note = f"PyTorch fake-quant proxy {proxy['snr_db']:.1f} dB" if proxy else ""
                print(f"| {label} | {profile} | {step:.2f} | {total:.2f} | {notes.get('package_bytes', 0) / 1024:.1f} | "
                      f"{notes.get('weight_bytes', 0) / 1024:.1f} | {notes.get('weights_vs_fp32', float('nan')):.3f} | "
                      f"{'—' if snr is None else f'{snr:.1f}'} | {validation['kind']} | "
                      f"{out_snr} | {note} |")


if __name__ == "__main__":
    main()
