"""An ONNX graph with an op onnx2tf has no converter for is refused before onnx2tf starts (exit 4 naming the op and a
workaround), instead of onnx2tf's own "No module named 'onnx2tf.ops.Loop'" halfway through."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from tests.passes.test_loop_trip_count import _float_trip_loop

pytest.importorskip("onnx2tf")


def test_ops_onnx2tf_lacks_names_loop(tmp_path: Path) -> None:
    from edgeconv.targets.tflite.onnx_to_tflite import ops_onnx2tf_lacks

    model = _float_trip_loop(True)
    path = tmp_path / "loop.onnx"
    onnx.save_model(model, str(path))
    assert ops_onnx2tf_lacks(path) == ["Loop"]  # Clip, Identity, Mul, Add (in the body too) all have converters


def test_loop_model_to_tflite_is_refused_with_a_workaround(tmp_path: Path, cli) -> None:
    from edgeconv.passes.loop_trip_count import cast_loop_trip_counts

    model = _float_trip_loop(False)
    cast_loop_trip_counts(model)
    path = tmp_path / "loop.onnx"
    onnx.save_model(model, str(path))
    res = cli("convert", path, "-t", "tflite-fp32", "-o", tmp_path / "out")
    assert res.code == 4, res.stderr
    assert "no converter for Loop" in res.stderr and "torch.jit.trace" in res.stderr
    assert not (tmp_path / "out").exists()
