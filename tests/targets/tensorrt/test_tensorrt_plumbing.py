"""The GPU path's plumbing, run on machines without a GPU against a stand-in tensorrt (tests/targets/tensorrt/fake_tensorrt.py:
the "engine" is ONNX Runtime on the ONNX it was built from). What this proves: with an engine available, every
tensorrt-* target writes engine + timing cache + ONNX, validates on the tensorrt runtime, compares the engine with ORT,
records versions and latency, reuses the shared timing cache, and build-engine honours shape ranges. What it does not
prove: anything about TensorRT itself (the gpu-marked tests do that on a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeconv.context import ShapeRange
from edgeconv.targets.tensorrt import _tools as trt_tools
from edgeconv.targets.tensorrt._engine import EngineRunner
from tests.targets.tensorrt import fake_tensorrt
from tests.targets.tensorrt.test_onnx_to_tensorrt import TARGETS, ort_logits, residual_cnn
from tests.helpers import convert, target_record

pytestmark = pytest.mark.skipif(trt_tools.why_no_engine() is None, reason="a real GPU is here: the gpu tests run instead")


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    for name, module in fake_tensorrt.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(trt_tools, "detect_gpu", lambda: trt_tools.GpuInfo(True, "", "Stand-in GPU", 1, "9.0", "13.0"))
    monkeypatch.setenv("EDGECONV_CACHE_DIR", str(tmp_path / "cache"))
    fake_tensorrt.CALLS.clear()
    return fake_tensorrt.CALLS


def test_every_profile_builds_runs_and_records_an_engine(fake_gpu: list[Any], digits: Any, tmp_path: Path) -> None:
    manifest = convert(digits.onnx, TARGETS, tmp_path / "out", calib=str(digits.calib), eval=str(digits.eval))
    reused = []
    for name in TARGETS:
        record = target_record(manifest, name)
        files = {(a["role"], a["format"], Path(a["path"]).name) for a in record["artifacts"]}
        assert files == {("model", "tensorrt-engine", "digits_cnn.engine"), ("model", "onnx", "digits_cnn.onnx"),
                         ("companion", "tensorrt-engine", "digits_cnn.timing.cache")}
        assert record["validation"]["runtime"] == "tensorrt" and record["validation"]["passed"]
        notes = record["notes"]["tensorrt"]
        assert notes["engine"] == "built" and notes["tensorrt"] == "11.4.0.106" and notes["cuda_runtime"] == "13.0"
        assert notes["gpu"]["name"] == "Stand-in GPU" and notes["gpu"]["compute_capability"] == "9.0"
        assert notes["vs_onnxruntime"]["metrics"]["snr_db"] > 100 and notes["vs_onnxruntime"]["samples"] == 8
        assert notes["vs_onnxruntime"]["latency"]["p50_ms"] > 0
        reused.append(notes["timing_cache_reused"])
    assert reused == [False, True, True]  # the shared per-GPU cache written by the first build serves the next ones
    flags = [c for c in fake_gpu if c[0] == "flags"]
    assert flags and all(c[1] == 1 for c in flags)  # STRONGLY_TYPED always set (required on 10.x, ignored on 11.x)
    assert ("clear_flag", 1) in fake_gpu  # tensorrt-fp32: TF32 off
    snr = {n: target_record(manifest, n)["validation"]["metrics"]["snr_db"] for n in TARGETS}
    assert snr["tensorrt-fp32"] > 100 and snr["tensorrt-fp16"] > 50 and snr["tensorrt-int8"] > 30


def test_build_engine_file_with_shape_range_and_dynamic_batch(fake_gpu: list[Any], tmp_path: Path) -> None:
    from edgeconv.targets.tensorrt.onnx_to_tensorrt import build_engine_file

    src = residual_cnn(tmp_path / "residual.onnx")
    ranges = {"x": ShapeRange((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    result = build_engine_file(src, tmp_path / "residual.engine", shape_ranges=ranges)
    assert result["optimisation_profile"] == {"x": [[1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16]]}
    assert ("profile", {"x": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}) in fake_gpu
    assert Path(result["timing_cache"]).name == "residual.timing.cache" and Path(result["timing_cache"]).is_file()
    assert not list(tmp_path.glob(".residual.engine.*"))  # the temp file was renamed into place
    runner = EngineRunner(tmp_path / "residual.engine")
    x = np.random.default_rng(0).normal(0, 1, (4, 3, 16, 16)).astype(np.float32)
    (y,) = runner.run({"x": x})
    assert y.shape == (4, 10) and np.allclose(y, ort_logits(src, x), atol=1e-5)
