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


def test_family_formats_are_recognised_by_their_readers(tmp_path) -> None:
    """formats.detect knows the hub and source formats itself; a family's own format is claimed by its reader."""
    import pytest

    from edgeconv.errors import InvalidInputError
    from edgeconv.formats import detect

    pte = tmp_path / "m.pte"
    pte.write_bytes(b"\x1c\x00\x00\x00ET12" + bytes(64))
    assert detect(pte).format == Format.EXECUTORCH
    xml = tmp_path / "m.xml"
    xml.write_text('<?xml version="1.0"?>\n<net name="m" version="11"><layers/></net>\n')
    with pytest.raises(InvalidInputError, match="weights m.bin are not beside it"):
        detect(xml)
    (tmp_path / "m.bin").write_bytes(b"\0")
    found = detect(xml)
    assert found.format == Format.OPENVINO and found.companions == (tmp_path / "m.bin",)
