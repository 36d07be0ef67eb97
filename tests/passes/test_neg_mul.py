"""passes/neg_mul: Neg(x) becomes Mul(x, -1) with a shared constant -1 per dtype, computing the same (exactly)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edgeconv.passes.neg_mul import neg_to_mul


def _layernorm_offset_model(dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """y = x * s + (-mean(x) * s) + (-x): Keras's LayerNormalization offset as tf2onnx writes it, and a second Neg."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], keepdims=1),
             helper.make_node("Neg", ["mean"], ["neg_mean"], name="neg_mean"),
             helper.make_node("Mul", ["neg_mean", "s"], ["offset"]),
             helper.make_node("Mul", ["x", "s"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["centred"]),
             helper.make_node("Neg", ["x"], ["neg_x"], name="neg_x"),
             helper.make_node("Add", ["centred", "neg_x"], ["y"])]
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [2, 8])],
                              [helper.make_tensor_value_info("y", dtype, [2, 8])],
                              [onnx.numpy_helper.from_array(np.array(0.5, np_type), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_negs_become_muls_by_one_shared_minus_one() -> None:
    for dtype, np_type in ((TensorProto.FLOAT, np.float32), (TensorProto.FLOAT16, np.float16)):
        model = _layernorm_offset_model(dtype)
        x = np.random.default_rng(0).standard_normal((2, 8)).astype(np_type)
        before = _run(model, x)
        assert neg_to_mul(model) == 2
        muls = [n for n in model.graph.node if n.name in ("neg_mean", "neg_x")]
        assert [n.op_type for n in muls] == ["Mul", "Mul"] and "Neg" not in {n.op_type for n in model.graph.node}
        assert muls[0].input[0] == "mean" and muls[1].input[0] == "x" and muls[0].input[1] == muls[1].input[1]
        minus_one = next(t for t in model.graph.initializer if t.name == muls[0].input[1])
        assert minus_one.data_type == dtype and onnx.numpy_helper.to_array(minus_one) == -1
        onnx.checker.check_model(model, full_check=True)
        np.testing.assert_array_equal(_run(model, x), before)  # x · -1 is -x, bit for bit


def test_integer_neg_keeps_its_type() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [3])
    model = helper.make_model(helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert neg_to_mul(model) == 1
    assert model.graph.initializer[0].data_type == TensorProto.INT64
    np.testing.assert_array_equal(_run(model, np.array([3, -2, 0], np.int64)), [-3, 2, 0])


def test_graph_without_neg_untouched() -> None:
    model = _layernorm_offset_model()
    for node in model.graph.node:
        if node.op_type == "Neg":
            node.op_type = "Sqrt"
    before = model.SerializeToString()
    assert neg_to_mul(model) == 0
    assert model.SerializeToString() == before
