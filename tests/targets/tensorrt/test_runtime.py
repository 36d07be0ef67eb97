"""The tensorrt runtime: says why it cannot run here (no GPU), refuses to "validate" an engine structurally, and is
never imported by other targets. Its GPU half runs a real engine (skipped, saying why, without a GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeconv.targets.tensorrt._tools import why_no_engine
from edgeconv.errors import EXIT_UNSUPPORTED, UnsupportedError
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes import runtime_named

NO_ENGINE = why_no_engine()


def test_registered_and_lazy() -> None:
    runtime = runtime_named("tensorrt")
    assert runtime.formats == frozenset({Format.TENSORRT_ENGINE}) and runtime.extra == "tensorrt"
    # listing targets / converters / runtimes and planning a TensorRT target never imports tensorrt
    code = ("import sys; from edgeconv.runtimes import all_runtimes; from edgeconv.converters import all_converters; "
            "from edgeconv.targets import resolve; all_runtimes(); all_converters(); resolve('tensorrt-int8'); "
            "from edgeconv.targets.tensorrt._tools import why_no_engine; why_no_engine(); "
            "print('tensorrt' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can run engines")
def test_without_gpu_it_says_why_and_refuses_structural_validation(tmp_path: Path) -> None:
    runtime = runtime_named("tensorrt")
    reason = runtime.can_execute_here()
    assert reason is not None and "NVIDIA GPU" in reason
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 64)
    with pytest.raises(UnsupportedError) as err:
        runtime().check_structure(Artifact(engine, Format.TENSORRT_ENGINE), None)  # type: ignore[arg-type]
    assert err.value.exit_code == EXIT_UNSUPPORTED and "edgeconv[tensorrt]" in err.value.hint


@pytest.mark.gpu
@pytest.mark.skipif(NO_ENGINE is not None, reason=f"TensorRT GPU test skipped: {NO_ENGINE}")
def test_gpu_session_runs_an_engine_in_source_output_order(digits: Any, tmp_path: Path) -> None:
    from types import SimpleNamespace

    import onnxruntime as ort

    from edgeconv.targets.tensorrt.onnx_to_tensorrt import build_engine_file

    engine = tmp_path / "digits.engine"
    build_engine_file(digits.onnx, engine, compiler={"tf32": False})
    ctx = SimpleNamespace(source=SimpleNamespace(output_names=("logits",)))
    session = runtime_named("tensorrt")().load(Artifact(engine, Format.TENSORRT_ENGINE), ctx)  # type: ignore[arg-type]
    assert session.output_names == ("logits",) and session.inputs[0].name == "image"
    x = digits.split.x_test[:1]
    (y,) = session.run({"image": x})
    ref = ort.InferenceSession(str(digits.onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert np.abs(y - ref).max() < 1e-3


@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can build engines")
def test_targets_say_what_happens_without_gpu() -> None:
    from edgeconv.availability import availability
    from edgeconv.targets import resolve

    for name in ("tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"):
        avail = availability(resolve(name))
        assert avail.usable and avail.validation == "partial"
        assert "engine not built here" in avail.reason and "ONNX Runtime" in avail.reason
