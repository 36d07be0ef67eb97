"""passes/hardswish: hard-swish / hard-sigmoid spelt out in Add / Clip / Mul / Div become HardSwish / HardSigmoid and
compute the same; near misses stay as they are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.hardswish import fuse_hardswish

RNG = np.random.default_rng(0)


class G:
    """A tiny graph builder: x (1x8x4x4) in, outputs named at the end."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def const(self, value: float, shape: tuple = ()) -> str:
        name = f"k{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.full(shape, value, np.float32), name))
        return name

    def op(self, op: str, *inputs: str, **attrs) -> str:
        self.n += 1
        out = f"{op.lower()}{self.n}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def relu6_x3(self, x: str, clip_attrs: bool = False, add_first: bool = False) -> str:
        added = self.op("Add", self.const(3.0), x) if add_first else self.op("Add", x, self.const(3.0, (1,)))
        if clip_attrs:
            return self.op("Clip", added, min=0.0, max=6.0)
        return self.op("Clip", added, self.const(0.0), self.const(6.0))

    def model(self, *outputs: str, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", "c", "h", "w"]) for o in outputs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        return model


def _keras(g: G, x: str) -> str:  # tf2onnx: x * (relu6(x + 3) * (1/6))
    return g.op("Mul", x, g.op("Mul", g.relu6_x3(x), g.const(1 / 6)))


def _product_first(g: G, x: str) -> str:  # (x * relu6(x + 3)) / 6
    return g.op("Div", g.op("Mul", g.relu6_x3(x, add_first=True), x), g.const(6.0))


def _product_then_sixth(g: G, x: str) -> str:  # (x * relu6(x + 3)) * (1/6), constant first
    return g.op("Mul", g.const(1 / 6), g.op("Mul", x, g.relu6_x3(x)))


def _div_gate(g: G, x: str) -> str:  # x * (relu6(x + 3) / 6)
    return g.op("Mul", g.op("Div", g.relu6_x3(x), g.const(6.0)), x)


def _hardsigmoid_node(g: G, x: str) -> str:  # x * HardSigmoid(x) as torch writes it
    return g.op("Mul", x, g.op("HardSigmoid", x, alpha=1 / 6, beta=0.5))


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _check(model: onnx.ModelProto, count: int) -> Counter:
    x = (RNG.normal(size=(1, 8, 4, 4)) * 4).astype(np.float32)  # -3..3 and beyond: every piece of the curve
    before = _run(model, x)
    assert fuse_hardswish(model) == count
    onnx.checker.check_model(model, full_check=True)
    for a, b in zip(_run(model, x), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return Counter(n.op_type for n in model.graph.node)


@pytest.mark.parametrize("spelling", [_keras, _product_first, _product_then_sixth, _div_gate, _hardsigmoid_node])
def test_hardswish_fused(spelling) -> None:
    g = G()
    y = g.op("Relu", spelling(g, g.op("Conv", "x", g.const(0.1, (8, 8, 1, 1)))))
    assert _check(g.model(y), 1) == {"Conv": 1, "HardSwish": 1, "Relu": 1}


def test_clip_attributes_below_opset_11() -> None:
    g = G()
    y = g.op("Mul", "x", g.op("Mul", g.relu6_x3("x", clip_attrs=True), g.const(1 / 6)))
    assert _check(g.model(y, opset=10), 1) == {"HardSigmoid": 1, "Mul": 1}  # HardSwish is opset 14: kept a HardSigmoid


def test_squeeze_excitation_gate_becomes_hardsigmoid() -> None:
    """SE: pooled → Conv → ReLU → Conv → relu6(s + 3) / 6 → Mul with the block's input."""
    g = G()
    s = g.op("ReduceMean", "x", axes=[2, 3], keepdims=1)
    s = g.op("Conv", g.op("Relu", g.op("Conv", s, g.const(0.2, (4, 8, 1, 1)))), g.const(0.3, (8, 4, 1, 1)))
    y = g.op("Mul", "x", g.op("Mul", g.relu6_x3(s), g.const(1 / 6)))
    ops = _check(g.model(y), 1)
    assert ops["HardSigmoid"] == 1 and ops["Mul"] == 1 and ops["Clip"] == 0 and ops["Add"] == 0


@pytest.mark.parametrize("case", ["plus-2", "clip-to-5", "divide-by-5", "intermediate-read-twice", "other-x",
                                  "intermediate-is-output"])
def test_near_misses_left_alone(case: str) -> None:
    g = G()
    outputs = []
    if case == "plus-2":
        y = g.op("Mul", "x", g.op("Div", g.op("Clip", g.op("Add", "x", g.const(2.0)), g.const(0.0), g.const(6.0)),
                                  g.const(6.0)))
    elif case == "clip-to-5":
        y = g.op("Div", g.op("Clip", g.op("Add", "x", g.const(3.0)), g.const(0.0), g.const(5.0)), g.const(6.0))
    elif case == "divide-by-5":
        y = g.op("Div", g.relu6_x3("x"), g.const(5.0))
    elif case == "intermediate-read-twice":
        clipped = g.relu6_x3("x")
        y = g.op("Div", clipped, g.const(6.0))
        outputs.append(g.op("Neg", clipped))
    elif case == "other-x":  # relu6(x + 3) * (1/6) gates a different tensor: a HardSigmoid, never a HardSwish
        y = g.op("Mul", g.op("Neg", "x"), g.op("Mul", g.relu6_x3("x"), g.const(1 / 6)))
    else:
        clipped = g.relu6_x3("x")
        y = g.op("Div", clipped, g.const(6.0))
        outputs.append(clipped)
    model = g.model(y, *outputs)
    expect = 1 if case in ("other-x", "plus-2") else 0  # clip(x + 2, 0, 6) / 6 is HardSigmoid(beta = 1/3)
    ops = _check(model, expect)
    assert ops["HardSwish"] == 0 and ops["HardSigmoid"] == expect


def test_trained_keras_spelling() -> None:
    """tf2onnx on a trained Keras MobileNetV3 (its transpose optimizer ran): the `+ 3` is a [1, 1, 1, 1] constant, and
    the SE gate's `+ 3` is folded into the Conv's bias, leaving clip(conv, 0, 6) * (1/6)."""
    g = G()
    h = g.op("Conv", "x", g.const(0.1, (8, 8, 1, 1)))
    added = g.op("Add", h, g.const(3.0, (1, 1, 1, 1)))
    h = g.op("Mul", h, g.op("Mul", g.op("Clip", added, g.const(0.0), g.const(6.0)), g.const(1 / 6)))
    s = g.op("Conv", g.op("ReduceMean", h, axes=[2, 3], keepdims=1), g.const(0.3, (8, 8, 1, 1)))
    y = g.op("Mul", h, g.op("Mul", g.op("Clip", s, g.const(0.0), g.const(6.0)), g.const(1 / 6)))
    model = g.model(y)
    ops = _check(model, 2)
    assert ops == {"Conv": 2, "HardSwish": 1, "ReduceMean": 1, "HardSigmoid": 1, "Mul": 1}
    gate = next(n for n in model.graph.node if n.op_type == "HardSigmoid")
    assert {a.name: round(a.f, 6) for a in gate.attribute} == {"alpha": round(1 / 6, 6), "beta": 0.0}


def test_ones_constant_longer_than_the_tensor_left_alone() -> None:
    """x (rank 2) + a [1, 1, 1, 1] constant broadcasts up to rank 4: removing the Add would change the output shape."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "lo", "hi"], ["c"]),
         helper.make_node("Div", ["c", "six"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 3])],
        [numpy_helper.from_array(np.full((1, 1, 1, 1), 3.0, np.float32), "three"),
         numpy_helper.from_array(np.array(0.0, np.float32), "lo"), numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
         numpy_helper.from_array(np.array(6.0, np.float32), "six")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # the Clip of the Add stays; only clip(a, 0, 6) / 6 (offset 0, on the rank-4 sum) may become a HardSigmoid
    fuse_hardswish(model)
    assert model.graph.node[0].op_type == "Add"


def test_gone_after_normalise(tmp_path: Path) -> None:
    from edgeconv.formats import Artifact, Format
    from edgeconv.normalise import normalise

    g = G()
    h = _keras(g, g.op("Conv", "x", g.const(0.1, (8, 8, 1, 1))))
    s = g.op("ReduceMean", h, axes=[2, 3], keepdims=1)
    y = g.op("Mul", h, g.op("Mul", g.relu6_x3(g.op("Conv", s, g.const(0.3, (8, 8, 1, 1)))), g.const(1 / 6)))
    source = tmp_path / "m.onnx"
    onnx.save(g.model(y), str(source))
    out, report = normalise(Artifact(source, Format.ONNX), tmp_path / "n.onnx", 17, {})
    ops = Counter(n.op_type for n in onnx.load(str(out.path)).graph.node)
    assert ops["Clip"] == 0 and ops["Add"] == 0 and ops["HardSwish"] == 1 and ops["HardSigmoid"] == 1, ops
    assert "hard-swish / hard-sigmoid fused: 2" in report.notes, report.notes
