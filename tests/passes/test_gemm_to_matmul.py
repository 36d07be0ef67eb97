"""passes/gemm_to_matmul: a Gemm with a constant weight becomes MatMul (+ Add), computing the same; others stay."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.gemm_to_matmul import gemm_to_matmul


def _gemm(trans_b: int, alpha: float, beta: float, bias: bool, constant_b: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4) if trans_b else (4, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "c")] if bias else []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])]
    if constant_b:
        inits.append(numpy_helper.from_array(w, "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    node = helper.make_node("Gemm", ["x", "w", "c"] if bias else ["x", "w"], ["y"], transB=trans_b, alpha=alpha,
                            beta=beta)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("trans_b, alpha, beta, bias", [(1, 1.0, 1.0, True), (0, 1.0, 1.0, True),
                                                        (1, 0.5, 2.0, True), (1, 1.0, 1.0, False)])
def test_same_result_as_matmul(trans_b: int, alpha: float, beta: float, bias: bool) -> None:
    model = _gemm(trans_b, alpha, beta, bias)
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    want = _run(model, {"x": x})
    assert gemm_to_matmul(model) == 1
    assert [n.op_type for n in model.graph.node] == (["MatMul", "Add"] if bias else ["MatMul"])
    weight = next(i for i in model.graph.initializer if i.name.endswith("_kn"))
    assert list(weight.dims) == [4, 6]  # stored [K, N], as MatMulNBits wants it
    assert {i.name for i in model.graph.initializer} == {weight.name, *(["c_gemm_0_bias"] if bias else [])}
    np.testing.assert_allclose(_run(model, {"x": x}), want, rtol=1e-5, atol=1e-5)


def test_gemm_with_a_computed_weight_stays() -> None:
    model = _gemm(1, 1.0, 1.0, True, constant_b=False)
    assert gemm_to_matmul(model) == 0 and [n.op_type for n in model.graph.node] == ["Gemm"]
