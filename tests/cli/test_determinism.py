"""Same inputs and versions → byte-identical artifacts, and the manifest's sha256 says so (CI compares them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _hashes(cli, source: Path, out: Path, *targets: str) -> dict[str, str]:
    args = [a for t in targets for a in ("-t", t)]
    result = cli("convert", source, *args, "--set", "validate.samples=4", "-o", out, "--json")
    assert result.code == 0, result.stdout + result.stderr
    manifest = json.loads(result.stdout)
    return {f"{t['target']}:{a['path']}": a["sha256"] for t in manifest["targets"] for a in t["artifacts"]}


def test_onnx_convert_twice_gives_identical_sha256(cli, digits, tmp_path: Path) -> None:
    first = _hashes(cli, digits.onnx, tmp_path / "a", "onnx", "onnx-fp16")
    second = _hashes(cli, digits.onnx, tmp_path / "b", "onnx", "onnx-fp16")
    assert len(first) == 2 and first == second


@pytest.mark.slow
def test_pytorch_export_is_deterministic(cli, digits, tmp_path: Path) -> None:
    """torch.export → ONNX (dynamo exporter) then normalisation: no timestamps, random names or unordered sets."""
    first = _hashes(cli, digits.pt2, tmp_path / "a", "onnx")
    second = _hashes(cli, digits.pt2, tmp_path / "b", "onnx")
    assert first == second
