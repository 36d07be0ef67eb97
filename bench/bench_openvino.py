"""OpenVINO targets: per model, size and OpenVINO CPU latency of openvino-int8 vs openvino-fp32 (one run, ratios),
next to edgeconv's cpu-int8 vs onnx (ONNX Runtime CPU) on the same samples, and executorch-int8 vs executorch-fp32
(ExecuTorch with XNNPACK) for the PyTorch models.

    .venv/bin/python bench/bench_openvino.py [--runs 200]

Models (built here, no downloads): the digits CNN (PyTorch, trained on scikit-learn digits), the test transformer block
(PyTorch), the detector-shaped CNN of the OpenVINO tests (ONNX, two heads), and a MobileNet-like separable-conv net
(PyTorch, 3x96x96, untrained) for a latency that means something. Latency = `edgeconv bench` (edgeconv.benchmark):
p50 of --runs after 10 warm-up runs, batch 1, random inputs; each runtime with its default threads on this machine.
Sizes: the .xml + .bin of an IR, the .onnx file for ORT; "weights": the .bin alone (the .xml is
topology, a few KiB that dominate tiny models). SNR: each target's validation against the source (calib /
eval samples of the model). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

PAIRS = [("OpenVINO CPU", "openvino-fp32", "openvino-int8"), ("ONNX Runtime CPU", "onnx", "cpu-int8"),
         ("ExecuTorch XNNPACK", "executorch-fp32", "executorch-int8")]  # ExecuTorch: PyTorch sources only


def separable_net(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU6()]
    channels = 32
    for filters, stride in [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1)]:
        layers += [torch.nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels),
                   torch.nn.BatchNorm2d(channels), torch.nn.ReLU6(), torch.nn.Conv2d(channels, filters, 1),
                   torch.nn.BatchNorm2d(filters), torch.nn.ReLU6()]
        channels = filters
    layers += [torch.nn.AvgPool2d(12), torch.nn.Flatten(), torch.nn.Linear(channels, 10)]  # 96 / 8 = 12
    return torch.nn.Sequential(*layers).eval()


def build_models(root: Path) -> list[dict]:
    import torch

    import conftest
    from converters.openvino_models import build_detector

    digits = conftest.DigitsModels(conftest.cached("digits", conftest._build_digits), None)
    transformer = conftest.cached("transformer", conftest._build_transformer)
    detector = root / "detector" / "detector.onnx"
    if not detector.exists():
        build_detector(detector.parent)
    mobilenet = root / "mobilenet"
    if not (mobilenet / "separable_net.pt2").exists():
        mobilenet.mkdir(parents=True, exist_ok=True)
        x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
        torch.export.save(torch.export.export(separable_net(), (x,)), str(mobilenet / "separable_net.pt2"))
        rng = np.random.default_rng(3)
        coarse = rng.uniform(0, 1, (64, 3, 12, 12)).repeat(8, axis=2).repeat(8, axis=3)
        conftest.save_samples(mobilenet / "calib", coarse.astype(np.float32))
    return [
        {"name": "digits CNN 1x8x8", "path": digits.pt2, "calib": digits.calib, "eval": digits.eval},
        {"name": "transformer block 16x32", "path": transformer / "transformer.pt2", "calib": transformer / "calib",
         "eval": transformer / "eval"},
        {"name": "detector 3x32x32 (2 heads)", "path": detector, "calib": detector.parent / "calib",
         "eval": detector.parent / "eval"},
        {"name": "MobileNet-like 3x96x96", "path": mobilenet / "separable_net.pt2", "calib": mobilenet / "calib",
         "eval": None},
    ]


def size_of(manifest: dict, target: str, out: Path, weights_only: bool = False) -> int:
    """All files of the target (.xml + .bin, or the .onnx); weights_only: the .bin alone for an IR."""
    from helpers import target_record

    arts = target_record(manifest, target)["artifacts"]
    if weights_only and any(a["path"].endswith(".bin") for a in arts):
        arts = [a for a in arts if a["path"].endswith(".bin")]
    return sum((out / a["path"]).stat().st_size for a in arts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    from edgeconv.benchmark import benchmark
    from edgeconv.errors import EdgeconvError
    from helpers import convert, model_path, target_record

    root = Path(tempfile.gettempdir()) / "edgeconv-bench-openvino"
    root.mkdir(exist_ok=True)
    rows = []
    for m in build_models(root):
        out = Path(tempfile.mkdtemp(dir=root)) / "out"
        pairs = [p for p in PAIRS if m["path"].suffix == ".pt2" or not p[1].startswith("executorch")]
        targets = [t for _, *pair in pairs for t in pair]
        try:
            manifest = convert(m["path"], targets, out, calib=str(m["calib"]), eval=str(m["eval"]) if m["eval"] else None)
        except EdgeconvError as e:
            rows.append(f"| {m['name']} | – | failed (exit {e.exit_code}): {e.message[:100]} | | | | | | | |")
            continue
        for runtime, fp32, int8 in pairs:
            sizes = {t: size_of(manifest, t, out) for t in (fp32, int8)}
            weights = {t: size_of(manifest, t, out, weights_only=True) for t in (fp32, int8)}
            lat = {t: benchmark(model_path(manifest, out, t), runs=args.runs, warmup=10).latency_ms["p50"]
                   for t in (fp32, int8)}
            snr = target_record(manifest, int8)["validation"]["metrics"]["snr_db"]
            rows.append(f"| {m['name']} | {runtime} ({fp32} → {int8}) | {sizes[fp32] / 1024:.1f} | "
                        f"{sizes[int8] / 1024:.1f} | {sizes[int8] / sizes[fp32]:.2f}x | {weights[int8] / weights[fp32]:.2f}x | "
                        f"{lat[fp32]:.3f} | "
                        f"{lat[int8]:.3f} | {lat[fp32] / lat[int8]:.2f}x | {snr:.1f} |")
    print(f"`edgeconv bench` p50 of {args.runs} runs (batch 1, default threads, {os.cpu_count()} cores); one run.\n")
    print("| model | runtime (fp32 → int8) | fp32 KiB | int8 KiB | int8 size | int8 weights (.bin) | fp32 ms | int8 ms | "
          "int8 speed-up | int8 SNR dB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
