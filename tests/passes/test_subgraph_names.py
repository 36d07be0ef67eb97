"""passes/subgraph_names: an If branch's initializer with the name of a main-graph initializer (what normalisation's
Constant → initializer move makes of torch's per-scope constant names) is renamed apart; the model computes the same
and ONNX Runtime's float16 converter, which keys initializers by name across graphs, takes it (it asserted before)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.subgraph_names import unique_subgraph_initializers
from edgeconv.quantizers.onnx_fp16 import to_fp16


def _if_model() -> onnx.ModelProto:
    """y = x * c (main graph's c = 2) + (x > 0 summed > 0 ? x * c (branch's own c = 3) : x)."""
    then_branch = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])],
                                    [numpy_helper.from_array(np.array(3.0, np.float32), "c")])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    nodes = [helper.make_node("Mul", ["x", "c"], ["scaled"]),
             helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["branch"], then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Add", ["scaled", "branch"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.array(2.0, np.float32), "c"),
                               numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_branch_initializer_renamed_and_outputs_unchanged() -> None:
    model = _if_model()
    with pytest.raises(AssertionError):
        to_fp16(onnx.ModelProto.FromString(model.SerializeToString()), keep_io_types=True)
    x_pos, x_neg = np.ones((1, 4), np.float32), -np.ones((1, 4), np.float32)
    before = _run(model, x_pos), _run(model, x_neg)
    np.testing.assert_array_equal(before[0], 5 * x_pos)  # 2x + 3x: the branch reads its own c
    assert unique_subgraph_initializers(model) == 1
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_array_equal(_run(model, x_pos), before[0])
    np.testing.assert_array_equal(_run(model, x_neg), before[1])
    fp16 = to_fp16(model, keep_io_types=True)
    np.testing.assert_allclose(_run(fp16, x_pos), before[0], rtol=1e-3)
    assert unique_subgraph_initializers(model) == 0
