"""Normalisation fixes what real exported graphs get wrong, and changes no numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgeconv.formats import Artifact, Format
from edgeconv.normalise import normalise


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
