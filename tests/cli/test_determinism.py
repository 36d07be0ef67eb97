"""Same inputs and versions → byte-identical artifacts, and the manifest's sha256 says so (CI compares them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _hashes(cli, source: Path, out: Path, *targets: str, calib: Path | None = None) -> dict[str, str]:
    args = [a for t in targets for a in ("-t", t)] + (["--calib", str(calib)] if calib else [])
    result = cli("convert", source, *args, "--set", "validate.samples=4", "-o", out, "--json")
    assert result.code == 0, result.stdout + result.stderr
    manifest = json.loads(result.stdout)
    return {f"{t['target']}:{a['path']}": a["sha256"] for t in manifest["targets"] for a in t["artifacts"]}


def test_onnx_convert_twice_gives_identical_sha256(cli, digits, tmp_path: Path) -> None:
    """fp32, fp16 and calibrated int8 (QDQ): calibration reads the samples in sorted order, seeds are fixed."""
    targets = ("onnx", "onnx-fp16", "onnx-int8-qdq")
    first = _hashes(cli, digits.onnx, tmp_path / "a", *targets, calib=digits.calib)
    second = _hashes(cli, digits.onnx, tmp_path / "b", *targets, calib=digits.calib)
    assert len(first) == 3 and first == second


@pytest.mark.slow
def test_pytorch_export_is_deterministic(cli, digits, tmp_path: Path) -> None:
    """torch.export → ONNX (dynamo exporter) then normalisation: no timestamps, random names or unordered sets."""
    first = _hashes(cli, digits.pt2, tmp_path / "a", "onnx")
    second = _hashes(cli, digits.pt2, tmp_path / "b", "onnx")
    assert first == second
