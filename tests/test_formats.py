"""Format detection by content, never by extension."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from edgeconv.errors import InvalidInputError, SafetyError
from edgeconv.formats import EXPORTED_PROGRAM, KERAS_H5, KERAS_V3, TORCH_PICKLE, TORCHSCRIPT, Format, detect


def test_pytorch_formats(digits, tmp_path: Path) -> None:
    assert (detect(digits.pt2).format, detect(digits.pt2).variant) == (Format.TORCH, EXPORTED_PROGRAM)
    assert (detect(digits.torchscript).format, detect(digits.torchscript).variant) == (Format.TORCH, TORCHSCRIPT)
    assert detect(digits.state_dict).variant == TORCH_PICKLE


def test_onnx_named_pt_is_onnx(digits, tmp_path: Path) -> None:
    disguised = tmp_path / "model.pt"
    shutil.copy(digits.onnx, disguised)
    assert detect(disguised).format == Format.ONNX


def test_torchscript_named_onnx_is_torchscript(digits, tmp_path: Path) -> None:
    disguised = tmp_path / "model.onnx"
    shutil.copy(digits.torchscript, disguised)
    assert detect(disguised).variant == TORCHSCRIPT


def test_keras_formats(keras_models: Path) -> None:
    assert detect(keras_models / "digits_keras.keras").variant == KERAS_V3
    assert detect(keras_models / "digits_keras.h5").variant == KERAS_H5


def test_savedmodel_dir(tmp_path: Path) -> None:
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"\x08\x01")
    assert detect(tmp_path / "sm").format == Format.SAVEDMODEL


def test_tflite_identifier(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    assert detect(path).format == Format.TFLITE


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"\x00\x01garbage-bytes-that-are-no-model" * 3, "not a model"),
    (b"PK\x03\x04truncated", "damaged"),
])
def test_bad_files_are_invalid_input(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=needle) as info:
        detect(path)
    assert info.value.exit_code == 3 and info.value.hint


def test_unknown_zip_names_entries(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InvalidInputError, match="readme.txt"):
        detect(path)


def test_zip_entry_escaping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../evil/data.pkl", "x")
    with pytest.raises(SafetyError):
        detect(path)
