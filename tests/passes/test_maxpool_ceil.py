"""passes/maxpool_ceil: a ceil-mode / padded MaxPool becomes an edge Pad + plain MaxPool with the same output."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeconv.passes.maxpool_ceil import maxpool_without_ceil


def _pool(size: int, **attrs) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("size, attrs", [
    (22, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),  # MTCNN: 22 -> 11 (floor would give 10)
    (11, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    (9, {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    (10, {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 0, 1], "ceil_mode": 1}),
])
def test_same_output_without_ceil_or_pads(size: int, attrs: dict) -> None:
    model = _pool(size, **attrs)
    x = -np.abs(np.random.default_rng(0).normal(size=(1, 2, size, size))).astype(np.float32)  # negative: -inf matters
    before = _run(model, x)
    assert maxpool_without_ceil(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Pad", "MaxPool"]
    pool = model.graph.node[1]
    assert not {a.name for a in pool.attribute} & {"pads", "ceil_mode"}
    np.testing.assert_array_equal(_run(model, x), before)


def test_plain_pool_untouched() -> None:
    assert maxpool_without_ceil(_pool(8, kernel_shape=[2, 2], strides=[2, 2])) == 0
