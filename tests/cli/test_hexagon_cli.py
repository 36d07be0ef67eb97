"""`edgeconv convert --target hexagon-*` as scripts see it: --soc spellings, exit codes, one JSON object on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_qnn")


def test_unknown_soc_exits_2_listing_parts(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "hexagon-int8", "--soc", "8 Gen 9", "-o", tmp_path / "out", "--json")
    assert result.code == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "8 Gen 9" in error["message"] and "sm8650" in error["hint"] and "X Elite" in error["hint"]
    assert not (tmp_path / "out").exists()


def test_dynamic_input_exits_3_with_the_fix(cli, messy_onnx: Path, tmp_path: Path) -> None:
    result = cli("convert", messy_onnx, "-t", "hexagon-int8", "--calib", messy_onnx.parent / "calib", "-o", tmp_path / "out")
    assert result.code == 3 and "Traceback" not in result.stderr
    assert "static shapes" in result.stderr and "input [Nx3x16x16]" in result.stderr
    assert "--input-shape input=1x3x16x16" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_convert_for_8_elite_json(cli, digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", digits.onnx, "-t", "hexagon-int8", "--soc", "snapdragon 8 ELITE", "--calib", digits.calib,
                 "--eval", digits.eval, "-o", out, "--json")
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)  # the simulator's banner went to stderr
    (record,) = manifest["targets"]
    assert record["notes"]["hexagon"]["soc"]["chip"] == "SM8750" and record["notes"]["hexagon"]["placement"]["percent"] == 100.0
    assert b"soc_type=SM8750;arch=79" in (out / "hexagon-int8" / "digits_cnn_ctx_qnn.bin").read_bytes()
    assert record["validation"]["runtime"] == "qnn_htp" and record["validation"]["passed"]
    assert {(a["role"], a["format"]) for a in record["artifacts"]} == {
        ("model", "qnn-context"), ("companion", "qnn-context"),  # the EPContext model and its context binary
        ("companion", "onnx"),  # the QDQ graph that was compiled (digits_cnn.int8.onnx)
        ("model", "dlc")}


@pytest.mark.slow
def test_fp16_on_a_part_without_fp16_exits_4(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "hexagon-fp16", "--soc", "7 gen 3", "-o", tmp_path / "out", "--json")
    assert result.code == 4, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "SM7550" in error["message"] and "float16" in error["message"] and "hexagon-int8" in error["hint"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_same_run_twice_same_hashes(cli, digits, tmp_path: Path) -> None:
    hashes = []
    for run in ("a", "b"):
        result = cli("convert", digits.onnx, "-t", "hexagon-int16", "--calib", digits.calib, "--eval", digits.eval,
                     "-o", tmp_path / run, "--json")
        assert result.code == 0, result.stderr
        hashes.append({a["path"]: a["sha256"] for a in json.loads(result.stdout)["targets"][0]["artifacts"]})
    assert hashes[0] == hashes[1] and len(hashes[0]) == 4  # ctx model, context binary, compiled ONNX, DLC
