"""Normalisation fixes what real exported graphs get wrong, and changes no numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeconv.formats import Artifact, Format
from edgeconv.errors import UnsupportedError
from edgeconv.normalise import default_opset, normalise
from edgeconv.targets.schema import OpsetRange


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_messy_graph_is_fixed(messy_onnx: Path, tmp_path: Path) -> None:
    out, report = normalise(Artifact(messy_onnx, Format.ONNX), tmp_path / "n.onnx", 17, {"input": (1, 3, 16, 16)})
    model = onnx.load(str(out.path))
    ops = [n.op_type for n in model.graph.node]
    assert report.opset_before == 11 and report.opset_after == 17
    assert report.constant_nodes_before == 11 and "Constant" not in ops  # weights became initializers
    assert report.batchnorm_before == 1 and "BatchNormalization" not in ops  # fused into the conv
    assert report.shape_nodes_before >= 4 and not {"Shape", "Gather", "Unsqueeze", "Concat"} & set(ops)  # folded
    assert ops == ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Reshape", "Gemm"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(out.path, x), _run(messy_onnx, x), rtol=1e-4, atol=1e-5)


def test_dynamic_batch_kept_without_shapes(messy_onnx: Path, tmp_path: Path) -> None:
    out, report = normalise(Artifact(messy_onnx, Format.ONNX), tmp_path / "n.onnx", 17, {})
    model = onnx.load(str(out.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # still dynamic
    assert report.constant_nodes_after == 0 and report.batchnorm_after == 0
    x = np.random.default_rng(1).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(out.path, x), _run(messy_onnx, x), rtol=1e-4, atol=1e-5)


def _pooled_conv(opset: int, folder: Path) -> Path:
    """Conv → Relu → ReduceMean over H, W (as `x.mean(dim=(2, 3))` exports at opset 18: axes as an input and an explicit
    noop_with_empty_axes, which opset 17's ReduceMean does not have)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"])]
    if opset >= 18:
        nodes.append(helper.make_node("ReduceMean", ["r", "axes"], ["y"], keepdims=0, noop_with_empty_axes=0))
    else:
        nodes.append(helper.make_node("ReduceMean", ["r"], ["y"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [w] + ([axes] if opset >= 18 else []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = folder / f"pooled{opset}.onnx"
    onnx.save(model, str(path))
    return path


def _run_x(path: Path) -> np.ndarray:
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("have, opset, want", [
    (18, OpsetRange(13, 23, 18), 18),  # inside the range: what the exporter wrote is kept (torch.onnx dynamo writes 18)
    (21, OpsetRange(13, 23, 18), 21),
    (11, OpsetRange(13, 23, 18), 18),  # below: upgraded to the preferred opset
    (21, OpsetRange(13, 20, 18), 20),  # above: down-converted to the newest the target takes
])
def test_opset_range(tmp_path: Path, have: int, opset: OpsetRange, want: int) -> None:
    source = _pooled_conv(have, tmp_path)
    out, report = normalise(Artifact(source, Format.ONNX), tmp_path / "n.onnx", opset, {})
    assert (report.opset_before, report.opset_after) == (have, want)
    assert default_opset(onnx.load(str(out.path))) == want
    assert any(f"→ {want}" in n for n in report.notes) == (have != want)
    np.testing.assert_allclose(_run_x(out.path), _run_x(source), rtol=1e-5, atol=1e-6)


def test_failed_down_conversion_is_unsupported_with_a_real_hint(tmp_path: Path) -> None:
    """onnx's version converter writes an opset-17 ReduceMean that keeps opset 18's attribute (an invalid graph): the
    ResNet-style `x.mean(dim=(2, 3))` case. It is caught, and the hint says what to do, not "export with opset 17"."""
    source = _pooled_conv(18, tmp_path)
    with pytest.raises(UnsupportedError) as info:
        normalise(Artifact(source, Format.ONNX), tmp_path / "n.onnx", OpsetRange.exactly(17), {})
    assert "uses opset 18, the target takes opset 17, and down-converting to 17 failed" in info.value.message
    assert "opset_version=17" in info.value.hint and "--set opset.max=18" in info.value.hint
    assert not (tmp_path / "n.onnx").exists()


def test_failing_optimiser_falls_back_to_the_unoptimised_graph(messy_onnx: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxslim is an optional optimiser: when it fails (it raised "invalid literal for int() with base 10: ''" on an
    If/Loop voice-activity model), normalisation goes on with the graph as it was, and says so."""
    import onnxslim

    def broken_slim(model, **kwargs):
        del model.graph.node[0]  # a failing optimiser may leave its input half rewritten
        raise ValueError("invalid literal for int() with base 10: ''")

    monkeypatch.setattr(onnxslim, "slim", broken_slim)
    out, report = normalise(Artifact(messy_onnx, Format.ONNX), tmp_path / "n.onnx", 17, {"input": (1, 3, 16, 16)})
    assert len(report.warnings) == 1 and "continuing with the unoptimised graph" in report.warnings[0]
    assert "invalid literal" in report.warnings[0] and report.batchnorm_after == 1  # not fused, but valid
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(out.path, x), _run(messy_onnx, x), rtol=1e-4, atol=1e-5)
