"""passes/castlike: CastLike with a known target dtype becomes the same Cast."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.castlike import castlike_to_cast


def test_castlike_becomes_cast_and_computes_the_same() -> None:
    graph = helper.make_graph(
        [helper.make_node("CastLike", ["k", "x"], ["k_like"]), helper.make_node("Mul", ["x", "k_like"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 3])],
        [numpy_helper.from_array(np.array(0.5, np.float64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    before = run(model)
    assert castlike_to_cast(model) == 1
    node = model.graph.node[0]
    assert node.op_type == "Cast" and list(node.input) == ["k"] and node.attribute[0].i == TensorProto.FLOAT16
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run(model), before)


def test_unknown_target_dtype_left_alone() -> None:
    graph = helper.make_graph([helper.make_node("CastLike", ["a", "b"], ["c"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]),
                               helper.make_tensor_value_info("b", TensorProto.UNDEFINED, None)],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert castlike_to_cast(model) == 0 and model.graph.node[0].op_type == "CastLike"
