"""--keep-going (-k, as make's): one failing target no longer throws away the targets that passed. They are written
(atomically, as always), the failed ones are listed in the manifest with their error, and the exit code is the worst."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

STRICT = 'name = "strict-int8"\nextends = "cpu-int8"\n[validate]\ngate = {{ min_snr_db = {snr} }}\n[quantize]\nmax_fallback = 0\n'


@pytest.fixture
def strict(tmp_path: Path) -> Path:
    """An int8 target whose gate no int8 model meets: it fails with exit 5 after doing all its work."""
    path = tmp_path / "strict.toml"
    path.write_text(STRICT.format(snr=200.0))
    return path


def _args(digits, strict: Path, out: Path) -> list:
    return ["convert", digits.pt2, "-t", "onnx", "-t", strict, "-t", "onnx-fp16", "--calib", digits.calib,
            "--eval", digits.eval, "-o", out]


def test_keep_going_writes_the_targets_that_passed(cli, digits, strict: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(*_args(digits, strict, out), "-k")
    assert result.code == 5, result.stderr[-2000:]
    assert "1 of 3 targets failed: strict-int8 (exit 5" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "onnx", "onnx-fp16"]  # no strict-int8 folder
    manifest = json.loads((out / "manifest.json").read_text())
    by_name = {t["target"]: t for t in manifest["targets"]}
    assert list(by_name) == ["onnx", "strict-int8", "onnx-fp16"]
    failed = by_name["strict-int8"]
    assert failed["error"]["code"] == 5 and "accuracy gate" in failed["error"]["message"] and not failed["artifacts"]
    for name in ("onnx", "onnx-fp16"):
        assert by_name[name]["validation"]["passed"] and by_name[name].get("error") is None
        for art in by_name[name]["artifacts"]:  # what the manifest lists is what is on disk
            assert hashlib.sha256((out / art["path"]).read_bytes()).hexdigest() == art["sha256"]
    assert "strict-int8" in result.stdout and "exit 5" in result.stdout  # the table shows the failed row


def test_keep_going_json_carries_the_manifest(cli, digits, strict: Path, tmp_path: Path) -> None:
    result = cli(*_args(digits, strict, tmp_path / "out"), "--keep-going", "--json")
    assert result.code == 5
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "targets-failed" and error["code"] == 5 and "\n" not in error["message"]
    targets = error["details"]["manifest"]["targets"]
    assert [t["target"] for t in targets if t.get("error")] == ["strict-int8"]


def test_without_keep_going_one_failure_discards_the_run(cli, digits, strict: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(*_args(digits, strict, out))
    assert result.code == 5 and not out.exists()


def test_keep_going_with_every_target_failing_writes_nothing(cli, digits, strict: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", digits.pt2, "-t", strict, "--calib", digits.calib, "-o", out, "-k")
    assert result.code == 5 and not out.exists()
    assert "failed its accuracy gate" in result.stderr and "targets failed" not in result.stderr


def test_keep_work_keeps_the_stage_files_of_a_failed_run(cli, digits, strict: Path, tmp_path: Path) -> None:
    """--keep-work on a run that fails: OUTDIR holds only .work/ (the stages' files, to inspect what failed) and the
    error says where; without it nothing is written; an OUTDIR holding an earlier result is not replaced (--force)."""
    args = ["convert", digits.onnx, "-t", strict, "--calib", digits.calib, "--eval", digits.eval]
    result = cli(*args, "-o", tmp_path / "plain")
    assert result.code == 5 and not (tmp_path / "plain").exists()
    out = tmp_path / "kept"
    result = cli(*args, "-o", out, "--keep-work", "--json")
    assert result.code == 5, result.stderr[-2000:]
    error = json.loads(result.stdout)["error"]
    assert f"the failed run's stage files are in {out / '.work'}" in error["hint"]
    assert [p.name for p in out.iterdir()] == [".work"]
    stages = sorted(p.name for p in (out / ".work").iterdir())
    assert any("quantize" in s or "onnx" in s for s in stages), stages
    assert any(p.suffix == ".onnx" for p in (out / ".work").rglob("*")), "the quantized model is there to inspect"
    earlier = tmp_path / "earlier"
    assert cli("convert", digits.onnx, "-t", "onnx", "-o", earlier).code == 0
    before = sorted(p.name for p in earlier.iterdir())
    result = cli(*args, "-o", earlier, "--keep-work", "--force", "--json")
    assert result.code == 5 and "the stage files were not kept" in json.loads(result.stdout)["error"]["hint"]
    assert sorted(p.name for p in earlier.iterdir()) == before
