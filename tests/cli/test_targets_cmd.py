"""`edgeconv targets` (list) and `edgeconv targets show NAME`, as scripts call them."""

from __future__ import annotations

import json


def test_targets_list_json(cli) -> None:
    result = cli("targets", "--json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)["targets"]
    by_name = {r["name"]: r for r in rows}
    assert {"onnx", "onnx-fp16"} <= set(by_name)
    assert set(by_name["onnx"]) >= {"family", "produces", "precision", "runtime", "available", "validation", "note"}
    assert by_name["onnx"]["available"] is True and by_name["onnx"]["produces"] == ["onnx"]


def test_targets_show_json(cli) -> None:
    result = cli("targets", "show", "onnx-fp16", "--json")
    assert result.code == 0, result.stderr
    target = json.loads(result.stdout)["target"]
    assert target["name"] == "onnx-fp16" and target["family"] == "onnx"
    assert target["quantize"]["precision"] == "fp16"  # from onnx-fp16 itself
    assert target["opset"] == {"min": 13, "max": 23, "preferred": 18}  # inherited from `extends = "onnx"`
    assert target["validate"]["gate"]["min_snr_db"] == 30.0
    assert target["available"]["usable"] is True
    # `targets NAME` is the same as `targets show NAME`
    assert json.loads(cli("targets", "onnx-fp16", "--json").stdout) == json.loads(result.stdout)


def test_targets_show_human(cli) -> None:
    result = cli("targets", "show", "onnx")
    assert result.code == 0, result.stderr
    assert "validate.gate.min_snr_db" in result.stdout and "usable here" in result.stdout


def test_targets_show_user_profile_file(cli, tmp_path) -> None:
    profile = tmp_path / "npu.toml"
    profile.write_text('name = "my-npu"\nextends = "onnx"\n[shapes]\nstatic = true\n')
    result = cli("targets", "show", profile, "--json")
    assert result.code == 0, result.stderr
    target = json.loads(result.stdout)["target"]
    assert target["name"] == "my-npu" and target["shapes"]["static"] is True


def test_targets_show_unknown_is_usage_error(cli) -> None:
    result = cli("targets", "show", "onx", "--json")
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "unknown target 'onx'" in error["message"] and "did you mean onnx" in error["hint"]
    assert cli("targets", "show").code == 2
    assert cli("targets", "show", "onnx", "onnx-fp16").code == 2
