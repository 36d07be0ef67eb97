"""The `edgeconv convert` contract as scripts see it: a subprocess, its exit code, its stdout JSON, its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeconv.manifest import sha256_of


@pytest.mark.slow
def test_convert_json_manifest(cli, digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", digits.onnx, "--target", "onnx", "--target", "onnx-fp16", "--eval", digits.eval, "-o", out, "--json")
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert set(manifest) >= {"source", "targets", "versions"}
    assert manifest["source"]["format"] == "onnx" and manifest["source"]["sha256"] == sha256_of(digits.onnx)
    assert {"onnx", "onnxruntime", "numpy"} <= set(manifest["versions"])
    for target in manifest["targets"]:
        art = target["artifacts"][0]
        assert set(art) >= {"path", "format", "sha256", "bytes"}
        assert sha256_of(out / art["path"]) == art["sha256"] and (out / art["path"]).stat().st_size == art["bytes"]
        validation = target["validation"]
        assert validation["runtime"] == "onnxruntime" and validation["passed"] is True
        assert set(validation["metrics"]) >= {"snr_db", "cosine", "max_abs", "top1_agreement"}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "onnx", "onnx-fp16"]
    assert not list(tmp_path.glob(".out.edgeconv-*"))


def test_dry_run_prints_plan_and_writes_nothing(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "onnx-fp16", "-o", tmp_path / "out", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    steps = plan["targets"][0]["steps"]
    assert [s.split()[0] for s in steps] == ["normalise", "quantize", "validate", "write"]
    assert not (tmp_path / "out").exists()


def test_unknown_target_is_usage_error(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "--target", "onx", "-o", tmp_path / "out", "--json")
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "unknown target 'onx'" in error["message"] and "did you mean onnx" in error["hint"]
    human = cli("convert", digits.onnx, "--target", "onx", "-o", tmp_path / "out")
    assert human.code == 2 and "Traceback" not in human.stderr and "did you mean onnx" in human.stderr


def test_bad_flag_is_usage_error_in_json(cli, tmp_path: Path) -> None:
    result = cli("convert", "x.onnx", "--no-such-flag", "--json")
    assert result.code == 2 and json.loads(result.stdout)["error"]["kind"] == "usage"


def test_accuracy_gate_failure_exits_5(cli, digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", digits.onnx, "-t", "onnx-fp16", "--set", "validate.gate.min_snr_db=200", "--eval", digits.eval,
                 "-o", out, "--json")
    assert result.code == 5, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "accuracy gate" in error["message"] and error["details"]["validation"]["metrics"]["snr_db"] < 200
    assert not out.exists() and not list(tmp_path.glob(".out.edgeconv-*"))


def test_pickled_module_refused_without_trust(cli, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(4, 2), str(path))
    result = cli("convert", path, "-t", "onnx", "-o", tmp_path / "out", "--input-shape", "input=1x4")
    assert result.code == 7 and "--trust-pickle" in result.stderr
    trusted = cli("convert", path, "-t", "onnx", "-o", tmp_path / "out", "--input-shape", "input=1x4", "--trust-pickle")
    assert trusted.code == 0, trusted.stderr


def test_torch_source_without_shape_asks_for_it(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.torchscript, "-t", "onnx", "-o", tmp_path / "out")
    assert result.code == 3 and "--input-shape image=" in result.stderr


def test_factory_with_weights_via_cli(cli, digits, tmp_path: Path) -> None:
    tests_dir = Path(__file__).resolve().parents[1]
    result = cli("convert", digits.state_dict, "--model", "model_zoo:digits_architecture", "--input-shape", "image=1x1x8x8",
                 "-t", "onnx", "--eval", digits.eval, "-o", tmp_path / "out", "--json", cwd=tests_dir)
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["source"]["variant"] == "factory" and manifest["source"]["path"] == "model_zoo:digits_architecture"
    assert manifest["targets"][0]["validation"]["metrics"]["top1_agreement"] == 1.0
