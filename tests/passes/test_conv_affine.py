"""passes/conv_affine: constant Mul / Div / Add / Sub after a Conv (directly or through one Transpose) are folded into
the Conv and compute the same; anything that is not per-output-channel, or whose Conv output is read elsewhere, stays."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.conv_affine import fold_conv_affine

RNG = np.random.default_rng(0)
C = 6


def _model(after: list[tuple[str, np.ndarray, bool]], transpose: bool = False, bias: bool = True, group: int = 1,
           extra_reader: bool = False) -> onnx.ModelProto:
    """x → Conv(3x3, C out) [→ Transpose NCHW→NHWC] → each (op, constant, constant_first) in turn → y."""
    inits = [numpy_helper.from_array(RNG.normal(size=(C, 4 // group, 3, 3)).astype(np.float32), "w")]
    conv_inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.normal(size=C).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1], group=group)]
    last = "c"
    if transpose:
        nodes.append(helper.make_node("Transpose", [last], ["t"], perm=[0, 2, 3, 1]))
        last = "t"
    for i, (op, const, first) in enumerate(after):
        inits.append(numpy_helper.from_array(const.astype(np.float32), f"k{i}"))
        nodes.append(helper.make_node(op, [f"k{i}", last] if first else [last, f"k{i}"], [f"a{i}"]))
        last = f"a{i}"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])]
    if extra_reader:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["side"]))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 5])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare the graphs as written
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _assert_same(model: onnx.ModelProto, expect_folded: int) -> onnx.ModelProto:
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    before = _run(model, x)
    assert fold_conv_affine(model) == expect_folded
    onnx.checker.check_model(model, full_check=True)
    for a, b in zip(_run(model, x), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return model


SCALAR, PER_CHANNEL = np.array(0.75), RNG.uniform(0.5, 2.0, size=(1, C, 1, 1))


@pytest.mark.parametrize("after", [
    [("Mul", SCALAR, False), ("Add", np.array(-0.25), False)],  # paddle2onnx's Conv → Mul → Add
    [("Add", np.array([0.5]), True), ("Mul", PER_CHANNEL, True)],  # Conv → Add → Mul, constants first
    [("Mul", PER_CHANNEL, False)],
    [("Div", np.array(3.0), False)],
    [("Div", PER_CHANNEL, False), ("Sub", PER_CHANNEL.reshape(C, 1, 1), False)],
])
@pytest.mark.parametrize("bias", [True, False])
def test_affine_chain_folded(after: list, bias: bool) -> None:
    model = _assert_same(_model(after, bias=bias), len(after))
    assert Counter(n.op_type for n in model.graph.node) == {"Conv": 1, "Relu": 1}
    assert len(model.graph.node[0].input) == 3  # a bias was added where there was none


def test_depthwise_conv_and_transpose_to_nhwc() -> None:
    """tf2onnx's Keras BatchNorm after a depthwise Conv: Conv → Transpose(0,2,3,1) → Mul([C]) → Add([C])."""
    after = [("Mul", RNG.uniform(0.5, 2, size=C), False), ("Add", RNG.normal(size=(1, 1, C)), False)]
    model = _assert_same(_model(after, transpose=True, group=2), 2)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Transpose", "Relu"]


@pytest.mark.parametrize("case", ["spatial", "wrong-axis-through-transpose", "other-reader", "rank-raising",
                                  "x-over-c", "c-minus-x", "divide-by-zero"])
def test_left_alone(case: str) -> None:
    model = {
        "spatial": lambda: _model([("Mul", RNG.normal(size=(1, 1, 5, 5)), False)]),
        "wrong-axis-through-transpose": lambda: _model([("Mul", RNG.normal(size=(1, C, 1, 1)), False)], transpose=True),
        "other-reader": lambda: _model([("Mul", SCALAR, False)], extra_reader=True),
        "rank-raising": lambda: _model([("Mul", np.ones((1, 1, 1, 1, 1)), False)]),
        "x-over-c": lambda: _model([("Div", SCALAR, True)]),
        "c-minus-x": lambda: _model([("Sub", SCALAR, True)]),
        "divide-by-zero": lambda: _model([("Div", np.zeros((1, C, 1, 1)), False)]),
    }[case]()
    nodes = len(model.graph.node)
    assert fold_conv_affine(model) == 0 and len(model.graph.node) == nodes


def test_shared_weight_copied_and_graph_output_kept() -> None:
    """Another Conv reading the same weight keeps it; an affine op writing a graph output leaves that name in place."""
    model = _model([("Mul", SCALAR, False)])
    model.graph.node.append(helper.make_node("Conv", ["x", "w"], ["other"], pads=[1, 1, 1, 1]))
    model.graph.output.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    model.graph.node.remove(relu)
    model.graph.output.remove(model.graph.output[0])
    model.graph.output.insert(0, helper.make_tensor_value_info("a0", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    model = _assert_same(model, 1)
    assert [o.name for o in model.graph.output] == ["a0", "other"]
    assert model.graph.node[0].output[0] == "a0" and model.graph.node[0].input[1] != "w"


def test_gone_after_normalise(tmp_path: Path) -> None:
    from edgeconv.formats import Artifact, Format
    from edgeconv.normalise import normalise

    source = tmp_path / "m.onnx"
    onnx.save(_model([("Mul", SCALAR, False), ("Add", np.array(0.1), False)], transpose=True), str(source))
    out, report = normalise(Artifact(source, Format.ONNX), tmp_path / "n.onnx", 17, {})
    ops = Counter(n.op_type for n in onnx.load(str(out.path)).graph.node)
    assert ops["Mul"] == 0 and ops["Add"] == 0, ops
    assert any(note.startswith("Conv affine ops folded") for note in report.notes), report.notes


def test_tensor_read_inside_a_subgraph_left_alone() -> None:
    """An If body reading the Conv's output by name: folding would change what the body sees."""
    model = _model([("Mul", SCALAR, False)])
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["inner"])], "body", [],
                             [helper.make_tensor_value_info("inner", TensorProto.FLOAT, ["n", "c", "h", "w"])])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node.append(helper.make_node("If", ["cond"], ["branch"], then_branch=body, else_branch=body))
    model.graph.output.append(helper.make_tensor_value_info("branch", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    assert fold_conv_affine(model) == 0
