"""The HTP simulator runtime: runs EPContext models, never falls back to the CPU silently, keeps stdout clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.errors import InvalidInputError
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes import runtime_named
from edgeconv.runtimes.ort import cpu_session
from edgeconv.targets.qnn.socs import resolve_soc
from tests.targets.qnn.test_onnx_to_dlc import quantized

pytest.importorskip("onnxruntime_qnn")


@pytest.fixture(scope="module")
def context_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("qnn-runtime")
    qdq = quantized(tmp)
    ctx_model = tmp / "ctx" / "m_ctx.onnx"
    ctx_model.parent.mkdir()
    session = qnn_session(qdq, htp_options(resolve_soc("8 Elite")),
                          {"ep.context_enable": 1, "ep.context_file_path": str(ctx_model), "ep.context_embed_mode": 0})
    del session
    return qdq, ctx_model


def test_runs_context_binary_like_the_qdq_graph(context_model: tuple[Path, Path]) -> None:
    qdq, ctx_model = context_model
    ctx = SimpleNamespace(options=SimpleNamespace(allow_cpu_fallback=False))
    session = runtime_named("qnn_htp")().load(Artifact(ctx_model, Format.QNN_CONTEXT), ctx)
    assert [s.name for s in session.inputs] == ["x"] and session.output_names == ("logits",)
    cpu = cpu_session(str(qdq))
    rng = np.random.default_rng(5)
    for _ in range(4):
        x = rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
        (htp,) = session.run({"x": x})
        (ref,) = cpu.run(None, {"x": x})
        assert htp.dtype == np.float32 and htp.shape == (1, 10)
        assert np.abs(htp - ref).max() < 0.05 * np.abs(ref).max()  # HTP kernels, not bit-identical to ORT's
    with pytest.raises(InvalidInputError, match="HTP simulator failed"):  # an EP error is an error, not a CPU rerun
        session.run({"x": np.zeros((1, 1, 4, 4), np.float32)})
    with pytest.raises(InvalidInputError, match="no sample"):
        session.run({"y": np.zeros((1, 1, 8, 8), np.float32)})


def test_missing_binary_is_reported(context_model: tuple[Path, Path], tmp_path: Path) -> None:
    _, ctx_model = context_model
    lonely = tmp_path / ctx_model.name
    lonely.write_bytes(ctx_model.read_bytes())  # without its _qnn.bin
    ctx = SimpleNamespace(options=SimpleNamespace(allow_cpu_fallback=False))
    with pytest.raises(InvalidInputError, match="cannot load"):
        runtime_named("qnn_htp")().load(Artifact(lonely, Format.QNN_CONTEXT), ctx)


def test_stdout_stays_clean(context_model: tuple[Path, Path]) -> None:
    """libQnnHtp prints to file descriptor 1 on first load; edgeconv sends that to stderr (--json relies on it)."""
    _, ctx_model = context_model
    code = ("import json, numpy as np; from edgeconv.targets.qnn._ep import htp_options, qnn_session; "
            f"s = qnn_session({str(ctx_model)!r}, htp_options(None)); "
            "y = s.run(None, {'x': np.zeros((1, 1, 8, 8), np.float32)})[0]; print(json.dumps({'shape': list(y.shape)}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"shape": [1, 10]}
