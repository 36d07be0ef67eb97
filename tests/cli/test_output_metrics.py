"""Per-output validation (issue 16): a detector-style model returning boxes, scores and int64 top-k indices. Each output
gets its own row in the result table and its own metrics in the manifest; the indices are judged by exact match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cached


def _build(folder: Path) -> None:
    import torch
    from torch import nn

    class TinyDetector(nn.Module):
        """A conv backbone with a box head and a score head over 16 anchors, then a top-5 post-process."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
            self.boxes = nn.Conv2d(16, 4, 1)
            self.scores = nn.Conv2d(16, 1, 1)

        def forward(self, image):
            features = self.backbone(image)  # [1, 16, 4, 4]: 16 anchors
            boxes = self.boxes(features).flatten(2).transpose(1, 2)[0]  # [16, 4]
            scores = torch.sigmoid(4.0 * self.scores(features).flatten())  # [16]
            top, index = torch.topk(scores, 5)
            return boxes, top, index

    torch.manual_seed(0)
    model = TinyDetector().eval()
    torch.export.save(torch.export.export(model, (torch.rand(1, 3, 16, 16),)), str(folder / "detector.pt2"))
    (folder / "eval").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(folder / "eval" / f"{i}.npy", rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32))


@pytest.fixture(scope="module")
def detector() -> Path:
    return cached("tiny-detector", _build)


@pytest.mark.slow
def test_detector_outputs_each_get_a_row_and_indices_exact_match(cli, detector: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", detector / "detector.pt2", "-t", "onnx-fp16", "--eval", detector / "eval", "-o", out,
                 env={"COLUMNS": "200"})
    assert result.code == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    outputs = manifest["targets"][0]["validation"]["metrics"]["outputs"]
    assert [o["kind"] for o in outputs] == ["float", "float", "integer"]
    assert outputs[2]["exact_match"] == 1.0 and outputs[2]["top1_agreement"] is None
    assert all(o["snr_db"] > 40 for o in outputs[:2]) and manifest["targets"][0]["validation"]["metrics"]["exact_match"] == 1.0
    rows = [line for line in result.stdout.splitlines() if "↳" in line]
    assert len(rows) == 3 and "=1.000" in rows[2]


@pytest.mark.slow
def test_output_names_name_the_outputs_everywhere(cli, detector: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("convert", detector / "detector.pt2", "-t", "onnx", "--eval", detector / "eval", "-o", out,
                 "--output-names", "boxes,scores,indices")
    assert result.code == 0, result.stderr[-2000:]
    import onnx

    manifest = json.loads((out / "manifest.json").read_text())
    assert [o["name"] for o in manifest["targets"][0]["validation"]["metrics"]["outputs"]] == ["boxes", "scores", "indices"]
    assert [o.name for o in onnx.load(str(out / "onnx" / "detector.onnx")).graph.output] == ["boxes", "scores", "indices"]


@pytest.mark.parametrize("names, needle", [("boxes,scores", "gives 2 name(s)"), ("a,,b", "empty or repeated"),
                                           ("a,a,b", "empty or repeated")])
def test_bad_output_names_are_usage_errors(cli, detector: Path, tmp_path: Path, names: str, needle: str) -> None:
    result = cli("convert", detector / "detector.pt2", "-t", "onnx", "--calib", "random", "-o", tmp_path / "out",
                 "--output-names", names)
    assert result.code == 2 and needle in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_output_names_refused_for_sources_that_name_their_outputs(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "onnx", "--calib", "random", "-o", tmp_path / "out", "--output-names", "x")
    assert result.code == 2 and "--output-names is for PyTorch sources" in result.stderr
