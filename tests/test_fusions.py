"""ONNX Runtime's fusions as edgeconv applies them (`[normalise] fuse`): Erf-GELU in every operand order exporters
write → one Gelu, a ReduceMean LayerNorm chain → LayerNormalization; same numbers on ONNX Runtime (CPU, its own graph
optimisations off, so the original graph really computes Erf), same bytes on a re-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.formats import Artifact, Format
from edgeconv.fusions import apply_fusions
from edgeconv.normalise import normalise

SQRT2 = np.float32(np.sqrt(2.0))


def _const(name: str, value: float | np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _gelu(x: str, order: str, n: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """x * 0.5 * (1 + erf(x / sqrt 2)) as exporters write it; `order` picks the operand order."""
    p = f"g{n}_"
    inits = [_const(p + "sqrt2", SQRT2), _const(p + "one", 1.0), _const(p + "half", 0.5), _const(p + "rsqrt2", 1 / SQRT2)]
    erf_in = helper.make_node("Div", [x, p + "sqrt2"], [p + "scaled"])
    if order == "tensorflow":  # x * 0.7071 instead of x / 1.4142, and the 0.5 before the x
        erf_in = helper.make_node("Mul", [p + "rsqrt2", x], [p + "scaled"])
    nodes = [erf_in, helper.make_node("Erf", [p + "scaled"], [p + "erf"])]
    if order == "pytorch":  # (x * (erf + 1)) * 0.5: PyTorch's TorchScript exporter
        nodes += [helper.make_node("Add", [p + "erf", p + "one"], [p + "plus"]),
                  helper.make_node("Mul", [x, p + "plus"], [p + "xplus"]),
                  helper.make_node("Mul", [p + "xplus", p + "half"], [p + "out"])]
    elif order == "swapped":  # every commutative operand the other way round
        nodes += [helper.make_node("Add", [p + "one", p + "erf"], [p + "plus"]),
                  helper.make_node("Mul", [p + "plus", x], [p + "xplus"]),
                  helper.make_node("Mul", [p + "half", p + "xplus"], [p + "out"])]
    elif order == "half_first":  # (x * 0.5) * (1 + erf)
        nodes += [helper.make_node("Mul", [x, p + "half"], [p + "xhalf"]),
                  helper.make_node("Add", [p + "one", p + "erf"], [p + "plus"]),
                  helper.make_node("Mul", [p + "plus", p + "xhalf"], [p + "out"])]
    elif order == "tensorflow":  # x * ((erf + 1) * 0.5)
        nodes += [helper.make_node("Add", [p + "erf", p + "one"], [p + "plus"]),
                  helper.make_node("Mul", [p + "half", p + "plus"], [p + "plushalf"]),
                  helper.make_node("Mul", [x, p + "plushalf"], [p + "out"])]
    return nodes, inits, p + "out"


def _mlp(orders: list[str], opset: int, extra_erf: bool = False) -> onnx.ModelProto:
    """x [4, 16] → (MatMul → GELU) per order → MatMul → y [4, 8]; `extra_erf`: an Erf that is no GELU (erf(h) * 2)."""
    rng = np.random.default_rng(0)
    nodes, inits, h = [], [], "x"
    for i, order in enumerate(orders):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (16, 16)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [h, f"w{i}"], [f"h{i}"]))
        gelu_nodes, gelu_inits, h = _gelu(f"h{i}", order, i)
        nodes += gelu_nodes
        inits += gelu_inits
    if extra_erf:
        inits.append(_const("two", 2.0))
        nodes += [helper.make_node("Erf", [h], ["plain_erf"]), helper.make_node("Mul", ["plain_erf", "two"], ["doubled"])]
        h = "doubled"
    inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (16, 8)).astype(np.float32), "w_out"))
    nodes.append(helper.make_node("MatMul", [h, "w_out"], ["y"]))
    for i, node in enumerate(nodes):
        node.name = f"{node.op_type}_{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def _layernorm_chain(opset: int) -> onnx.ModelProto:
    """LayerNorm as exported below opset 17: ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div → Mul → Add."""
    rng = np.random.default_rng(1)
    inits = [_const("two", 2.0), _const("eps", 1e-5), _const("gamma", rng.uniform(0.5, 1.5, 16)),
             _const("beta", rng.normal(0, 0.1, 16))]
    axes = {"axes": [-1]}
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], name="mean", **axes),
             helper.make_node("Sub", ["x", "mean"], ["centred"], name="sub"),
             helper.make_node("Pow", ["centred", "two"], ["squared"], name="pow"),
             helper.make_node("ReduceMean", ["squared"], ["var"], name="var", **axes),
             helper.make_node("Add", ["var", "eps"], ["var_eps"], name="add_eps"),
             helper.make_node("Sqrt", ["var_eps"], ["std"], name="sqrt"),
             helper.make_node("Div", ["centred", "std"], ["normed"], name="div"),
             helper.make_node("Mul", ["normed", "gamma"], ["scaled"], name="gamma_mul"),
             helper.make_node("Add", ["scaled", "beta"], ["y"], name="beta_add")]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 16])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # ORT would fuse the Erf itself
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _ops(model: onnx.ModelProto) -> list[tuple[str, str]]:
    return [(n.domain, n.op_type) for n in model.graph.node]


@pytest.mark.parametrize("opset, domain", [(21, ""), (17, "com.microsoft")])
def test_every_operand_order_fuses_to_one_gelu_with_the_same_numbers(opset: int, domain: str) -> None:
    orders = ["pytorch", "swapped", "half_first", "tensorflow"]
    original = _mlp(orders, opset)
    fused = onnx.ModelProto()
    fused.CopyFrom(original)
    report = apply_fusions(fused, ("gelu",))
    assert report.fused == {"gelu": 4} and report.notes == ["fused 4 Erf-GELU into Gelu (onnxruntime FusionGelu)"]
    ops = _ops(fused)
    assert ops.count((domain, "Gelu")) == 4 and not {"Erf", "Div"} & {op for _, op in ops}
    assert ops.count(("", "MatMul")) == 5 and len(ops) == 9  # nothing else touched
    # at opset >= 20 the ONNX Gelu (no com.microsoft import left); below, ORT's contrib Gelu
    assert ("com.microsoft" in {i.domain for i in fused.opset_import}) == (opset < 20)
    onnx.checker.check_model(fused)
    x = np.random.default_rng(2).normal(0, 2, (4, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(fused, x), _run(original, x), rtol=1e-5, atol=1e-5)
    again = onnx.ModelProto()
    again.CopyFrom(original)
    apply_fusions(again, ("gelu",))
    assert again.SerializeToString() == fused.SerializeToString()  # reproducible


def test_erf_that_is_no_gelu_is_left_alone() -> None:
    model = _mlp(["pytorch"], 21, extra_erf=True)
    report = apply_fusions(model, ("gelu", "layernorm"))
    assert report.fused == {"gelu": 1}
    assert [op for _, op in _ops(model)].count("Erf") == 1  # erf(h) * 2 stays


def test_layernorm_chain_fuses_with_the_same_numbers() -> None:
    original = _layernorm_chain(17)
    fused = onnx.ModelProto()
    fused.CopyFrom(original)
    report = apply_fusions(fused, ("layernorm",))
    assert report.fused == {"layernorm": 1} and [op for _, op in _ops(fused)] == ["LayerNormalization"]
    x = np.random.default_rng(3).normal(1, 3, (2, 5, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(fused, x), _run(original, x), rtol=1e-5, atol=1e-5)
    below = _layernorm_chain(13)
    report = apply_fusions(below, ("layernorm",))
    assert report.fused == {} and report.notes == ["layernorm fusion skipped: opset 13 < 17"]


def test_normalise_fuses_what_the_profile_asks_and_reports_it(tmp_path: Path) -> None:
    """An opset-17 source upgraded to 21 by normalisation: its Erf-GELU becomes the ONNX Gelu; without `fuse`, Erf stays."""
    source = tmp_path / "mlp.onnx"
    onnx.save_model(_mlp(["pytorch", "swapped"], 17), str(source))
    out, report = normalise(Artifact(source, Format.ONNX), tmp_path / "n.onnx", 21, {}, ("gelu", "layernorm"))
    assert report.opset_after == 21 and report.fused == {"gelu": 2}
    assert "fused 2 Erf-GELU into Gelu (onnxruntime FusionGelu)" in report.notes
    model = onnx.load_model(str(out.path))
    assert [op for _, op in _ops(model)] == ["MatMul", "Gelu", "MatMul", "Gelu", "MatMul"]
    assert {i.domain for i in model.opset_import} == {""}
    x = np.random.default_rng(4).normal(0, 2, (4, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(model, x), _run(onnx.load_model(str(source)), x), rtol=1e-5, atol=1e-5)
    plain, plain_report = normalise(Artifact(source, Format.ONNX), tmp_path / "p.onnx", 21, {})
    assert plain_report.fused == {} and "Erf" in {n.op_type for n in onnx.load_model(str(plain.path)).graph.node}
