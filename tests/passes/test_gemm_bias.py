"""passes/gemm_bias: a Gemm with a scalar bias gets one bias value per column, computes the same and quantizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.gemm_bias import expand_scalar_gemm_bias


def _gemm(trans_b: int, bias: np.ndarray) -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(6, 4) if trans_b else (4, 6)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=trans_b)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", [np.array(1e-10, np.float32), np.array([0.5], np.float32)])
def test_scalar_bias_becomes_a_vector(trans_b: int, bias: np.ndarray) -> None:
    model = _gemm(trans_b, bias)
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    before = _run(model, x)
    assert expand_scalar_gemm_bias(model) == 1
    c = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "c"))
    assert c.shape == (6,) and np.all(c == bias.reshape(()))
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), before)


def test_vector_bias_untouched() -> None:
    model = _gemm(0, np.arange(6, dtype=np.float32))
    assert expand_scalar_gemm_bias(model) == 0


def test_quantizes_after_the_pass(tmp_path: Path) -> None:
    """ONNX Runtime's QDQ quantizer raised IndexError on the 0-d bias."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.items, None)

    model = _gemm(1, np.array(1e-10, np.float32))
    expand_scalar_gemm_bias(model)
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), weight_type=QuantType.QInt8,
                    per_channel=True)
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(tmp_path / "q.onnx")).graph.node)
