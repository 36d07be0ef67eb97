"""Artifact readers: one per converted format, each in its family's folder (targets/<family>/reader.py)."""

from __future__ import annotations

from edgeconv.artifact_readers import _readers, reader_for
from edgeconv.formats import Format


def test_every_readable_format_has_one_reader_in_its_family_folder() -> None:
    readers = _readers()
    assert set(readers) == {Format.ONNX, Format.QNN_CONTEXT, Format.TFLITE, Format.OPENVINO, Format.EXECUTORCH}
    for fmt, reader in readers.items():
        module = type(reader).__module__
        assert module.startswith("edgeconv.targets.") and module.endswith(".reader"), (fmt, module)
        assert reader_for(fmt) is reader


def test_source_formats_have_no_reader() -> None:
    """Sources are opened by their framework loaders (sources/), never by a reader."""
    for fmt in (Format.TORCH, Format.KERAS, Format.SAVEDMODEL):
        assert reader_for(fmt) is None
