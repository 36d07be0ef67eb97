"""QDQ ONNX → DLC through the QNN IR backend, and the DLC archive check (Qualcomm writes zip CRCs as 0)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeconv.targets.qnn._ep import read_dlc
from edgeconv.targets.qnn.onnx_to_dlc import OnnxToDlc, check_dlc
from edgeconv.errors import InvalidInputError, StepSkipped, UnsupportedError
from edgeconv.formats import Artifact, Format, detect
from edgeconv.normalise import normalise
from tests.targets.qnn.hexagon_models import shape_subgraph_model

pytest.importorskip("onnxruntime_qnn")


def quantized(tmp_path: Path, fold: bool = True) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = shape_subgraph_model(tmp_path / "m.onnx")
    if fold:
        model = normalise(Artifact(model, Format.ONNX), tmp_path / "folded.onnx", 17, {"x": (1, 1, 8, 8)})[0].path
    samples = iter([{"x": np.random.default_rng(i).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)} for i in range(8)])
    reader = SimpleNamespace(get_next=lambda: next(samples, None), rewind=lambda: None)
    out = tmp_path / "q.onnx"
    quantize_static(str(model), str(out), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return out


def step_ctx(tmp_path: Path, allow_cpu: bool = False) -> SimpleNamespace:
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    source = SimpleNamespace(artifact=Artifact(tmp_path / "shape_subgraph.onnx", Format.ONNX))
    return SimpleNamespace(work_dir=work, source=source, options=SimpleNamespace(allow_cpu_fallback=allow_cpu), notes={})


def test_dlc_is_an_archive_with_metadata(tmp_path: Path) -> None:
    ctx = step_ctx(tmp_path)
    dlc = OnnxToDlc().convert(Artifact(quantized(tmp_path), Format.ONNX), ctx)
    assert dlc.format == Format.DLC and dlc.path.name == "shape_subgraph.dlc"
    assert dlc.path.read_bytes()[:4] == b"PK\x03\x04" and detect(dlc.path).format == Format.DLC  # by content
    info = ctx.notes["dlc"]
    assert {"model", "model.params", "model.params.bin", "dlc.metadata2.3.0"} <= set(info["entries"])
    assert info["dlc_version"] == "2.3.0" and info["generator"].startswith("qnn-net-run 2.")
    assert info["model_bytes"] > 1000 and info["params_bytes"] > 5000  # the fc weights are in there
    with pytest.raises(zipfile.BadZipFile, match="CRC"):  # why read_dlc exists
        zipfile.ZipFile(dlc.path).read("dlc.metadata2.3.0")
    meta = json.loads(read_dlc(dlc.path)["dlc.metadata2.3.0"])
    assert meta["header"]["artifact_type"] == "DLC_METADATA"


def test_damaged_dlc_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dlc"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(InvalidInputError):
        check_dlc(bad)
    not_dlc = tmp_path / "plain.zip"
    with zipfile.ZipFile(not_dlc, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedError, match="missing DLC entries"):
        check_dlc(not_dlc)


def test_split_graph_gives_no_dlc(tmp_path: Path) -> None:
    """Unfolded Shape/Range nodes are not QNN ops: the IR backend splits the graph, and a DLC must hold all of it."""
    model = quantized(tmp_path, fold=False)
    with pytest.raises(UnsupportedError, match="split the model"):
        OnnxToDlc().convert(Artifact(model, Format.ONNX), step_ctx(tmp_path))
    with pytest.raises(StepSkipped):  # --allow-cpu-fallback: the DLC is recorded as not built
        OnnxToDlc().convert(Artifact(model, Format.ONNX), step_ctx(tmp_path, allow_cpu=True))


def test_dlc_is_reproducible(tmp_path: Path) -> None:
    """Two conversions of the same graph give the same bytes: only the metadata timestamps differed, edgeconv fixes them
    in place (same length, so the aligned entries do not move)."""
    model = quantized(tmp_path)
    first = OnnxToDlc().convert(Artifact(model, Format.ONNX), step_ctx(tmp_path / "a")).path.read_bytes()
    second_path = OnnxToDlc().convert(Artifact(model, Format.ONNX), step_ctx(tmp_path / "b")).path
    assert second_path.read_bytes() == first
    history = json.loads(read_dlc(second_path)["dlc.metadata.history.2.3.0"])
    assert history["header"]["timestamp"] == "1980-01-01 00:00:00 UTC"
