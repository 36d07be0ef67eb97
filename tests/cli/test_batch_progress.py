"""`edgeconv batch` progress: which pairs run, in which stage, and how many are done, on a real two-model batch."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest

# what each pair goes through for onnx-fp16: the .pt2 is exported first, the ONNX model starts at normalise
STAGES = {"a": ["export", "normalise", "quantize", "validate"], "b": ["normalise", "quantize", "validate"]}


def _project(tmp_path: Path, digits) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "edgeconv.toml").write_text(
        f'targets = ["onnx-fp16"]\n[models.a]\nsource = "{digits.pt2}"\n[models.b]\nsource = "{digits.onnx}"\n')
    return project


@pytest.mark.slow
def test_batch_display_shows_each_pairs_stages_and_the_count(digits, tmp_path: Path) -> None:
    """A forced terminal: the live block names each running pair with its stage as the runs report them, the count
    goes 1/2 then 2/2, and each pair's events come in order (start, its stages, done)."""
    from rich.console import Console

    from edgeconv.batch import run_batch
    from edgeconv.cli.batch_progress import BatchDisplay
    from edgeconv.cli.ui import Ui
    from edgeconv.config import load_config

    config = load_config(_project(tmp_path, digits) / "edgeconv.toml")
    stream = StringIO()
    ui = Ui(err=Console(file=stream, force_terminal=True, width=160, color_system=None))
    display = BatchDisplay(ui, 2, "batch (edgeconv.toml)")
    with display.live():
        summary = run_batch(config, jobs=2, on_start=display.started, on_stage=display.stage, on_done=display.done)
    assert summary.counts == {"ok": 2, "skipped": 0, "failed": 0}
    for model, stages in STAGES.items():
        events = [(kind, what) for kind, m, t, what in display.events if m == model and t == "onnx-fp16"]
        assert events == [("start", ""), *(("stage", s) for s in stages), ("done", "ok")]
    assert display.completed == 2 and display.stages == {}
    text = stream.getvalue()
    for model, stages in STAGES.items():
        for stage in stages:  # drawn while that pair was in that stage
            assert re.search(rf"{model} → onnx-fp16 +{stage}\b", text), (model, stage)
    assert "1/2 done" in text and "2/2 done, 0 running" in text
    assert re.search(r"\[1/2\] ok [ab] → onnx-fp16", text) and re.search(r"\[2/2\] ok [ab] → onnx-fp16", text)


@pytest.mark.slow
def test_batch_progress_off_a_terminal(cli, digits, tmp_path: Path) -> None:
    """Not a terminal: stage lines on stderr with -v only, nothing on stdout but the table; --json: stdout is the one
    JSON object and stderr carries no progress."""
    project = _project(tmp_path, digits)
    verbose = cli("-v", "batch", "-j", "2", cwd=project)
    assert verbose.code == 0, verbose.stdout + verbose.stderr
    for model, stages in STAGES.items():
        for stage in stages:
            assert re.search(rf"^{stage} +{model} → onnx-fp16", verbose.stderr, re.M), (model, stage, verbose.stderr)
    assert re.search(r"^\[2/2\] ok [ab] → onnx-fp16", verbose.stderr, re.M)
    assert "2 converted, 0 unchanged, 0 failed" in verbose.stdout
    for text in (verbose.stdout, verbose.stderr):
        assert "\x1b[" not in text and "\r" not in text  # no live block, no colours: plain lines for logs
    assert "→ onnx-fp16:" not in verbose.stdout and "[1/2]" not in verbose.stdout
    log = (project / "out" / ".logs" / "a--onnx-fp16.log").read_text()
    assert "[export]" in log and "edgeconv-progress" not in log  # the run's log names its stages too

    quiet = cli("batch", "-j", "2", "--force", cwd=project)  # no -v: the table only
    assert quiet.code == 0 and "→" not in quiet.stderr and "2 converted" in quiet.stdout

    machine = cli("-v", "batch", "-j", "2", "--json", "--force", cwd=project)
    assert machine.code == 0 and json.loads(machine.stdout)["counts"]["ok"] == 2
    assert "[2/2]" not in machine.stderr and not re.search(r"^normalise", machine.stderr, re.M)


def test_stage_events_round_trip() -> None:
    from edgeconv.progress import event_line, parse_event

    line = event_line("quantize", "onnx-fp16: quantize fp16")
    assert line.endswith("\n") and parse_event(line) == {"stage": "quantize", "detail": "onnx-fp16: quantize fp16"}
    assert parse_event("warning: something\n") is None and parse_event("edgeconv-progress: not json\n") is None
