"""targets/qnn/_placement: how a QNN EP session that wrote no op trace is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeconv.errors import InvalidInputError, UnsupportedError
from edgeconv.targets.qnn import _placement
from tests.targets.qnn.hexagon_models import shape_subgraph_model

pytest.importorskip("onnxruntime_qnn")


@pytest.mark.parametrize("message, error", [
    # what the HTP backend said building audio_torchstft's graph (its STFT): a compiler limit, exit 4
    ("[ONNXRuntimeError] : 11 : EP_FAIL : Failed to finalize QNN graph. Error: QNN_COMMON_ERROR_MEM_ALLOC: Memory "
     "allocation related error., Code: 1002", UnsupportedError),
    ("[ONNXRuntimeError] : 1 : FAIL : Load model from x.onnx failed: Protobuf parsing failed", InvalidInputError),
])
def test_no_trace_is_a_compiler_limit_or_bad_input(tmp_path: Path, monkeypatch, message: str, error: type) -> None:
    def session(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(_placement, "qnn_session", session)
    with pytest.raises(error) as raised:
        _placement.check_placement(shape_subgraph_model(tmp_path / "m.onnx"), None)
    assert raised.value.exit_code == (4 if error is UnsupportedError else 3)
    assert message.split(":")[-1].strip() in str(raised.value)
