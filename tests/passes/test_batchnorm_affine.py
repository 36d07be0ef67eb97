"""passes/batchnorm_affine: a BatchNormalization no Conv absorbed becomes Mul + Add per channel, computing the same."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.batchnorm_affine import batchnorm_to_affine


def _bn_model(rank: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    c = 6
    shape = [2, c, 5, 4][:rank]
    params = {"gamma": rng.uniform(0.5, 2, c), "beta": rng.normal(0, 1, c), "mean": rng.normal(0, 1, c),
              "var": rng.uniform(0.1, 3, c)}
    nodes = [helper.make_node("Log", ["x"], ["logx"]),
             helper.make_node("BatchNormalization", ["logx", "gamma", "beta", "mean", "var"], ["y"], name="bn",
                              epsilon=1e-3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_standalone_batchnorm_becomes_mul_add_and_computes_the_same() -> None:
    for rank in (2, 3, 4):  # BatchNorm1d on features / on sequences, BatchNorm2d
        model = _bn_model(rank)
        x = np.random.default_rng(1).uniform(0.01, 5, [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
        x = x.astype(np.float32)
        run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
        before = run(model)
        assert batchnorm_to_affine(model) == 1
        assert [n.op_type for n in model.graph.node] == ["Log", "Mul", "Add"]
        assert model.graph.node[-1].output[0] == "y"
        assert {i.name for i in model.graph.initializer} == {"bn_affine_scale", "bn_affine_shift"}  # the BN's 4 freed
        scale = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "bn_affine_scale"))
        assert scale.shape == (6,) + (1,) * (rank - 2)
        onnx.checker.check_model(model, full_check=True)
        np.testing.assert_allclose(run(model), before, rtol=1e-5, atol=1e-6)


def test_training_mode_or_computed_statistics_left_alone() -> None:
    model = _bn_model(3)
    model.graph.node[1].attribute.append(helper.make_attribute("training_mode", 1))
    assert batchnorm_to_affine(model) == 0
    model = _bn_model(3)
    model.graph.node[1].input[3] = "logx"  # a mean that is not a constant
    assert batchnorm_to_affine(model) == 0
