"""examples/Makefile drives the real CLI the way a project's Makefile would: convert per target, then nothing to redo."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _make(out: Path, *args: str) -> subprocess.CompletedProcess:
    edgeconv = f"{shlex.quote(sys.executable)} -m edgeconv"
    return subprocess.run(["make", "-C", str(EXAMPLES), f"EDGECONV={edgeconv}", f"OUT={out}", *args],
                          capture_output=True, text=True, timeout=900, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_example_makefile_exports_several_targets(tmp_path: Path) -> None:
    out = tmp_path / "models"
    targets = "TARGETS=onnx-fp16 onnx-int8-qdq"
    first = _make(out, targets, "all", "check")  # convert each target, then validate + bench one artifact
    assert first.returncode == 0, first.stdout + first.stderr
    records = {}
    for target in ("onnx-fp16", "onnx-int8-qdq"):
        manifest = json.loads((out / target / "manifest.json").read_text())
        (record,) = manifest["targets"]
        assert record["target"] == target and record["validation"]["passed"] is True
        assert (out / target / record["artifacts"][0]["path"]).is_file()
        records[target] = record
    int8, fp16 = records["onnx-int8-qdq"], records["onnx-fp16"]
    assert int8["artifacts"][0]["bytes"] < 0.8 * fp16["artifacts"][0]["bytes"]  # int8 weights vs fp16 weights
    assert int8["validation"]["metrics"]["top1_agreement"] >= 0.95
    assert "passed" in first.stdout and "p50 ms" in first.stdout  # `make check`: validate, then bench
    second = _make(out, targets)  # up to date: make runs nothing
    assert second.returncode == 0 and "Nothing to be done" in second.stdout


def test_example_ci_workflow_and_config_are_consistent() -> None:
    from edgeconv.config import load_config

    cfg = load_config(EXAMPLES / "edgeconv.toml")
    (model,) = cfg.models
    assert model.source == EXAMPLES / "digits_cnn.pt2" and model.source.is_file()
    assert len(model.targets) >= 3
    workflow = (EXAMPLES / "ci" / "github-workflow.yml").read_text()
    assert "edgeconv batch examples/edgeconv.toml" in workflow and "make -C examples" in workflow
    yaml = pytest.importorskip("yaml")
    steps = yaml.safe_load(workflow)["jobs"]["export"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "edgeconv doctor" in runs and "torch==2.13.0" in runs  # the CPU wheel, pinned like constraints.txt
    makefile = (EXAMPLES / "Makefile").read_text()
    for target in ("all:", "batch:", "check:"):
        assert target in makefile
