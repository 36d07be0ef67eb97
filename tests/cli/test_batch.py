"""`edgeconv batch`: config files, parallel conversions, the content-hash cache, the summary and the worst exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


def _project(tmp_path: Path, digits, config_name: str, text: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(digits.onnx, project / "digits.onnx")
    eval_dir = project / "eval"
    eval_dir.mkdir()
    for file in sorted(digits.eval.glob("*.npy"))[:8]:
        shutil.copy(file, eval_dir / file.name)
    (project / config_name).write_text(text)
    return project


PYPROJECT = """
[project]
name = "my-app"

[tool.edgeconv]
output = "build/models"
targets = ["onnx", "onnx-fp16"]

[tool.edgeconv.defaults]
eval = "eval"

[tool.edgeconv.models.digits]
source = "digits.onnx"
set = ["validate.samples=8"]
"""


@pytest.mark.slow
def test_batch_from_pyproject_parallel_then_cached(cli, digits, tmp_path: Path) -> None:
    project = _project(tmp_path, digits, "pyproject.toml", PYPROJECT)
    first = cli("batch", "-j", "2", "--json", cwd=project)
    assert first.code == 0, first.stdout + first.stderr
    summary = json.loads(first.stdout)
    assert summary["jobs"] == 2 and summary["exit_code"] == 0 and summary["counts"] == {"ok": 2, "skipped": 0, "failed": 0}
    runs = {r["target"]: r for r in summary["runs"]}
    assert [r["target"] for r in summary["runs"]] == ["onnx", "onnx-fp16"]  # config order, whatever finished first
    out = project / "build" / "models" / "digits"
    for target, run in runs.items():
        assert run["model"] == "digits" and run["status"] == "ok" and run["outdir"] == str(out / target)
        manifest = json.loads((out / target / "manifest.json").read_text())
        assert [a["sha256"] for a in manifest["targets"][0]["artifacts"]] == [a["sha256"] for a in run["artifacts"]]
        assert run["validation"]["passed"] is True and run["validation"]["snr_db"] > 30
    assert json.loads((project / "build" / "models" / "batch-summary.json").read_text())["counts"]["ok"] == 2

    again = json.loads(cli("batch", "--json", cwd=project).stdout)  # nothing changed: nothing runs
    assert again["counts"] == {"ok": 0, "skipped": 2, "failed": 0} and again["exit_code"] == 0
    assert [r["artifacts"] for r in again["runs"]] == [r["artifacts"] for r in summary["runs"]]

    sample = sorted((project / "eval").glob("*.npy"))[0]  # the evaluation data changed: both pairs run again
    np.save(sample, np.load(sample) * 0.5)
    dry = json.loads(cli("batch", "--dry-run", "--json", cwd=project).stdout)
    assert [r["status"] for r in dry["runs"]] == ["pending", "pending"]
    rerun = json.loads(cli("batch", "--json", "-t", "onnx", cwd=project).stdout)  # a filter runs only that pair
    assert [(r["target"], r["status"]) for r in rerun["runs"]] == [("onnx", "ok")]

    artifact = out / "onnx" / "onnx" / "digits.onnx"  # an output edited by hand is not trusted
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    human = cli("batch", cwd=project)
    assert human.code == 0 and "2 converted, 0 unchanged" in human.stdout


CONFIG = """
output = "out"
targets = ["onnx-fp16"]

[defaults]
eval = "eval"

[models.strict]
source = "digits.onnx"
set = ["validate.gate.min_snr_db=200"]

[models.typo]
source = "digits.onnx"
targets = ["onx"]
"""


@pytest.mark.slow
def test_batch_exit_code_is_the_worst_run(cli, digits, tmp_path: Path) -> None:
    project = _project(tmp_path, digits, "edgeconv.toml", CONFIG)
    result = cli("batch", project / "edgeconv.toml", "-j", "2", "--json")
    assert result.code == 5, result.stdout + result.stderr  # max(5 accuracy gate, 2 unknown target)
    runs = {r["model"]: r for r in json.loads(result.stdout)["runs"]}
    assert runs["strict"]["exit_code"] == 5 and runs["strict"]["error"]["kind"] == "accuracy-gate"
    assert runs["typo"]["exit_code"] == 2 and "did you mean onnx" in runs["typo"]["error"]["hint"]
    assert Path(runs["strict"]["log"]).read_text().startswith("$ -m edgeconv convert")
    again = cli("batch", project, "--json")  # failures are never cached: they run again
    assert again.code == 5 and all(r["status"] == "failed" for r in json.loads(again.stdout)["runs"])
    human = cli("batch", project)
    assert human.code == 5 and "failed" in human.stdout and "accuracy gate" in human.stdout


def test_batch_config_errors_are_usage_errors(cli, tmp_path: Path) -> None:
    (tmp_path / "edgeconv.toml").write_text('targets = ["onnx"]\n[models.a]\nsource = "a.onnx"\ncalibb = "x"\n')
    result = cli("batch", "--json", cwd=tmp_path)
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "unknown key 'calibb'" in error["message"] and "did you mean 'calib'" in error["hint"]
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli("batch", "--json", cwd=empty)
    assert missing.code == 2 and "no edgeconv.toml" in json.loads(missing.stdout)["error"]["message"]
    (empty / "edgeconv.toml").write_text('[models.a]\nsource = "a.onnx"\n')
    assert "has no targets" in json.loads(cli("batch", "--json", cwd=empty).stdout)["error"]["message"]
    assert cli("batch", "-j", "0", cwd=tmp_path).code == 2


def test_config_to_convert_arguments(tmp_path: Path) -> None:
    from edgeconv.config import load_config

    (tmp_path / "edgeconv.toml").write_text(
        'targets = ["onnx"]\njobs = 3\n[defaults]\ncalib = "random"\n'
        '[[models]]\nsource = "m.pt2"\ntargets = ["onnx", "./my.toml"]\ninput_shapes = { image = [1, 1, 8, 8] }\n'
        'set = "validate.samples=4"\nreport = true\n')
    cfg = load_config(tmp_path / "edgeconv.toml")
    assert cfg.jobs == 3 and cfg.output == tmp_path / "out"
    (model,) = cfg.models
    assert model.name == "m"  # [[models]] without a name: the source's stem
    assert model.targets == ("onnx", str(tmp_path / "my.toml"))
    args = model.convert_args("onnx", tmp_path / "o")
    assert args[:6] == ["convert", str(tmp_path / "m.pt2"), "--target", "onnx", "-o", str(tmp_path / "o")]
    assert args[6:] == ["--calib", "random", "--input-shape", "image=1x1x8x8", "--set", "validate.samples=4", "--report"]


def test_pair_key_follows_the_code_digest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The pair key is stage_cache.cache_key over the tools the stage cache keys on: a changed edgeconv (its code
    digest, the version string unchanged) never skips a pair as unchanged."""
    from edgeconv import stage_cache
    from edgeconv.batch import pair_key
    from edgeconv.config import ModelEntry

    (tmp_path / "m.onnx").write_bytes(b"not a model: only its bytes are hashed")
    model = ModelEntry("m", tmp_path / "m.onnx", ("onnx",), {"calib": "random"})
    real = dict(stage_cache.tool_versions())
    tools = dict(real)
    monkeypatch.setattr(stage_cache, "tool_versions", lambda: tools)
    first = pair_key(model, "onnx")
    assert pair_key(model, "onnx") == first and len(first) == 64
    tools["code"] = "0" * 64
    assert pair_key(model, "onnx") != first
    tools.update(real)  # back to the real tools: the real key
    assert pair_key(model, "onnx") == first
    (tmp_path / "m.onnx").write_bytes(b"other bytes")
    assert pair_key(model, "onnx") != first


def test_batch_sigterm_stops_every_conversion(digits, tmp_path: Path) -> None:
    """SIGTERM: the running conversions are stopped, nothing is written, exit 143 with one JSON error object."""
    import os
    import signal
    import subprocess
    import sys
    import time

    project = tmp_path / "project"
    project.mkdir()
    (project / "edgeconv.toml").write_text(
        f'targets = ["onnx", "onnx-fp16"]\n[models.digits]\nsource = "{digits.pt2}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "edgeconv", "batch", "-j", "2", "--json"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = project / "out" / ".logs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(logs.glob("*.log"))) < 2:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, stdout
    assert json.loads(stdout)["error"]["kind"] == "interrupted"
    assert not (project / "out" / "digits").exists()
    assert not (project / "out" / "batch-summary.json").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(project / "out")], capture_output=True, text=True).stdout.split()
    assert [p for p in leftovers if int(p) != os.getpid()] == []


@pytest.mark.parametrize("columns", [50, 60])
def test_batch_table_fits_narrow_terminals(digits, tmp_path: Path, columns: int) -> None:
    """The batch summary table drops its least important columns on a narrow terminal (the caption says which) and
    never cuts a model or target name; --dry-run renders the same table without converting anything."""
    import os
    import subprocess
    import sys

    project = _project(tmp_path, digits, "pyproject.toml", PYPROJECT.replace('["onnx", "onnx-fp16"]',
                                                                             '["onnx-int16-qdq", "onnx-fp16"]'))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

    def table(width: int) -> str:
        proc = subprocess.run([sys.executable, "-m", "edgeconv", "batch", "--dry-run"], cwd=project, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, "COLUMNS": str(width)},
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    narrow = table(columns)
    lines = [line for line in narrow.splitlines() if line[:1] in "┏┃┡│└"]
    assert lines and max(len(line) for line in lines) <= columns and "…" not in narrow
    for target in ("onnx-int16-qdq", "onnx-fp16"):
        assert any(line.startswith(f"│ digits │ {target} ") for line in lines), narrow
    assert "narrow terminal:" in " ".join(narrow.split())
    wide = table(200)
    assert "narrow terminal" not in wide and "SNR dB" in wide and "note" in wide
