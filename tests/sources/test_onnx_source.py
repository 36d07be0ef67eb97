"""ONNX sources with external data: converted like any other; the data file is checked before it is read."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeconv.context import ConvertOptions
from edgeconv.errors import InvalidInputError
from edgeconv.formats import detect
from edgeconv.sources import open_source
from tests.helpers import convert, target_record


def _with_external_data(src: Path, folder: Path) -> Path:
    folder.mkdir()
    model = onnx.load(str(src))
    path = folder / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.weights",
                    size_threshold=0)
    return path


def test_external_data_model_converts(digits, tmp_path: Path) -> None:
    path = _with_external_data(digits.onnx, tmp_path / "m")
    source = open_source(detect(path), ConvertOptions())
    assert [c.name for c in source.artifact.companions] == ["ext.weights"]
    assert [s.name for s in source.inputs] == ["image"] and source.output_names == ("logits",)
    manifest = convert(path, ["onnx"], tmp_path / "out", eval=str(digits.eval))
    assert target_record(manifest, "onnx")["validation"]["metrics"]["snr_db"] > 90


def test_short_external_data_is_invalid(digits, tmp_path: Path) -> None:
    path = _with_external_data(digits.onnx, tmp_path / "m")
    data = path.parent / "ext.weights"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(InvalidInputError, match="too short"):
        open_source(detect(path), ConvertOptions())
