"""`edgeconv inspect MODEL`: I/O, op histogram, weights, dynamic dims and the target check, on real models."""

from __future__ import annotations

import json
from pathlib import Path


def test_inspect_digits_onnx_json(cli, digits) -> None:
    result = cli("inspect", digits.onnx, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "onnx" and report["bytes"] == digits.onnx.stat().st_size
    assert report["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32", "dynamic_dims": []}]
    assert report["outputs"][0]["name"] == "logits" and report["outputs"][0]["shape"] == [1, 10]
    # conv(1→16, 3x3) + conv(16→32, 3x3) + linear(512→10), BatchNorm folded into the convs by the exporter
    assert report["ops"]["Conv"] == 2 and report["ops"]["Gemm"] == 1 and report["ops"]["Relu"] == 2
    assert report["params"] == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 10 + 10) == 9930
    assert report["bytes_by_dtype"] == {"float32": 9930 * 4}
    assert report["dynamic_dims"] == {} and report["quantized"] is False
    fits = {f["target"]: f for f in report["profiles"]}
    assert fits["onnx"]["status"] == "yes" and fits["onnx"]["route"] == ["normalise"]
    assert fits["onnx-fp16"]["route"] == ["normalise", "quantize fp16"]


def test_inspect_messy_graph_reports_dynamic_dims_and_constants(cli, messy_onnx) -> None:
    report = json.loads(cli("inspect", messy_onnx, "--json").stdout)
    assert report["dynamic_dims"] == {"input": [0], "logits": [0]}
    assert report["opsets"] == {"ai.onnx": 11}
    assert report["ops"]["Constant"] >= 1 and report["ops"]["BatchNormalization"] == 1 and report["ops"]["Shape"] == 1
    assert any("Constant nodes" in n for n in report["notes"])
    assert report["params"] > 0 and report["bytes_by_dtype"]["float32"] > 0


def test_inspect_says_why_a_static_shape_target_cannot_take_it(cli, messy_onnx, tmp_path: Path) -> None:
    npu = tmp_path / "npu.toml"
    npu.write_text('name = "my-npu"\nextends = "onnx"\n[shapes]\nstatic = true\n')
    report = json.loads(cli("inspect", messy_onnx, "--target", npu, "--target", "onnx", "--json").stdout)
    fits = {f["target"]: f for f in report["profiles"]}
    assert fits["onnx"]["status"] == "yes"
    assert fits["my-npu"]["status"] == "needs-input-shape"
    assert "--input-shape input=1x3x16x16" in fits["my-npu"]["reasons"][0]
    fixed = json.loads(cli("inspect", messy_onnx, "--target", npu, "--input-shape", "input=2x3x16x16", "--json").stdout)
    assert fixed["profiles"][0]["status"] == "yes"


def test_inspect_human_output(cli, digits) -> None:
    result = cli("inspect", digits.onnx)
    assert result.code == 0, result.stderr
    for text in ("image", "1x1x8x8", "Conv", "params: 9,930", "onnx-fp16"):
        assert text in result.stdout


def test_inspect_not_a_model_is_invalid_input(cli, tmp_path: Path) -> None:
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"definitely not a model" * 10)
    result = cli("inspect", junk, "--json")
    assert result.code == 3
    assert json.loads(result.stdout)["error"]["kind"] == "invalid-input"
    assert cli("inspect", tmp_path / "missing.onnx").code == 3
