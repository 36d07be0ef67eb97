"""passes/reciprocal_div: Reciprocal(x) becomes Div(1, x) with a shared constant 1 per dtype, computing the same."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edgeconv.passes.reciprocal_div import reciprocal_to_div


def _norm_model(dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """y = x * Reciprocal(Sqrt(x^2 + 1)) + Reciprocal(x + 2): two Reciprocals, as tf2onnx writes a LayerNorm."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("Add", ["sq", "one_in"], ["sq1"]),
             helper.make_node("Sqrt", ["sq1"], ["rms"]),
             helper.make_node("Reciprocal", ["rms"], ["inv"], name="inv"),
             helper.make_node("Mul", ["x", "inv"], ["normed"]),
             helper.make_node("Add", ["x", "two"], ["x2"]),
             helper.make_node("Reciprocal", ["x2"], ["inv2"], name="inv2"),
             helper.make_node("Add", ["normed", "inv2"], ["y"])]
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [2, 8])],
                              [helper.make_tensor_value_info("y", dtype, [2, 8])],
                              [onnx.numpy_helper.from_array(np.array(1, np_type), "one_in"),
                               onnx.numpy_helper.from_array(np.array(2, np_type), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_reciprocals_become_divs_by_one_shared_constant() -> None:
    for dtype, np_type in ((TensorProto.FLOAT, np.float32), (TensorProto.FLOAT16, np.float16)):
        model = _norm_model(dtype)
        x = np.random.default_rng(0).uniform(0.1, 3.0, (2, 8)).astype(np_type)
        before = _run(model, x)
        assert reciprocal_to_div(model) == 2
        divs = [n for n in model.graph.node if n.op_type == "Div"]
        assert [n.name for n in divs] == ["inv", "inv2"] and "Reciprocal" not in {n.op_type for n in model.graph.node}
        assert divs[0].input[0] == divs[1].input[0] and list(divs[0].input[1:]) == ["rms"]
        one = next(t for t in model.graph.initializer if t.name == divs[0].input[0])
        assert one.data_type == dtype and onnx.numpy_helper.to_array(one) == 1
        onnx.checker.check_model(model, full_check=True)
        np.testing.assert_allclose(_run(model, x), before, rtol=1e-3 if np_type == np.float16 else 1e-6)  # 1 ulp


def test_graph_without_reciprocal_untouched() -> None:
    model = _norm_model()
    for node in model.graph.node:
        if node.op_type == "Reciprocal":
            node.op_type = "Neg"
    before = model.SerializeToString()
    assert reciprocal_to_div(model) == 0
    assert model.SerializeToString() == before
