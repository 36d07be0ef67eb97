"""passes/gathernd: GatherND with constant indices becomes Reshape + Gather, element for element."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.gathernd import gathernd_to_gather


def _model(data_shape: list[int], index: np.ndarray, batch_dims: int = 0) -> onnx.ModelProto:
    k = index.shape[-1]
    out_shape = list(index.shape[:-1]) + data_shape[k:] if not batch_dims else None
    graph = helper.make_graph(
        [helper.make_node("GatherND", ["x", "idx"], ["y"], batch_dims=batch_dims)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, data_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(index.astype(np.int64), "idx")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("data_shape, index", [
    ([1, 32], np.stack([np.zeros(32), np.arange(32)], -1).reshape(1, 1, 1, 32, 2)),  # transformers' mask indexing
    ([4, 5, 6], np.array([[3, 1], [0, -1], [2, 4]])),  # partial index (k=2 of 3 dims), a negative one
    ([3, 4], np.array([[[2, 3]], [[0, 0]]])),
])
def test_constant_gathernd_becomes_gather(data_shape: list[int], index: np.ndarray) -> None:
    model = _model(data_shape, index)
    x = np.random.default_rng(0).normal(size=data_shape).astype(np.float32)
    before = _run(model, x)
    assert gathernd_to_gather(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Gather"]
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), before)


def test_batch_dims_and_out_of_range_left_alone() -> None:
    assert gathernd_to_gather(_model([2, 3], np.array([[1], [2]]), batch_dims=1)) == 0
    assert gathernd_to_gather(_model([2, 3], np.array([[5, 0]]))) == 0
