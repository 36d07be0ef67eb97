"""passes/constant_values: list / scalar forms of Constant become `value` tensors; the graph computes the same."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
from onnx import TensorProto, helper

from edgeconv.passes.constant_values import constant_values_to_tensors


def _empty_ints_constant(output: str) -> onnx.NodeProto:
    """What torch.onnx writes for an empty shape (onnx.helper itself cannot make it: no type for an empty list)."""
    node = helper.make_node("Constant", [], [output])
    node.attribute.append(onnx.AttributeProto(name="value_ints", type=onnx.AttributeProto.INTS))
    return node


def _model() -> onnx.ModelProto:
    nodes = [
        _empty_ints_constant("empty"),
        helper.make_node("Constant", [], ["shape"], value_ints=[2, 3]),
        helper.make_node("Constant", [], ["scale"], value_float=0.5),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Mul", ["r", "scale"], ["m"]),
        helper.make_node("Shape", ["empty"], ["n"]),
        helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["m", "nf"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_list_constants_become_tensors_and_onnxslim_folds_them() -> None:
    model = _model()
    x = np.arange(6, dtype=np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    before = run(model)
    assert constant_values_to_tensors(model) == 3
    assert all(n.attribute[0].name == "value" for n in model.graph.node if n.op_type == "Constant")
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run(model), before)
    slim = onnxslim.slim(model)  # raised "Could not infer attribute `value_ints` type" before the pass
    np.testing.assert_array_equal(run(slim), before)


@__import__("pytest").mark.slow
def test_bert_encoder_normalises_with_onnxslim(tmp_path) -> None:
    """The real case: transformers' BERT exported by torch.onnx (no optimiser) with static shapes. onnxslim raised on
    its empty `value_ints` Constant and the whole optimisation was skipped (and the HTP then crashed on the unfolded
    graph); after the pass onnxslim runs and no warning is left."""
    import pytest

    pytest.importorskip("transformers")
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT
    from tests.helpers import convert, target_record

    assert not registry.ensure(ROOT, ["bert_tiny"])
    folder = ROOT / "bert_tiny"
    manifest = convert(folder / "bert_tiny.pt2", ["onnx"], tmp_path / "out", eval=str(folder / "eval"))
    normalise = target_record(manifest, "onnx")["notes"]["normalise"]
    assert normalise["warnings"] == [] and any(n.startswith("list-form Constants → tensors") for n in normalise["notes"])
    assert normalise["nodes_after"] < normalise["nodes_before"]  # onnxslim folded
    assert target_record(manifest, "onnx")["validation"]["metrics"]["snr_db"] > 100
