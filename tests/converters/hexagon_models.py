"""Small ONNX graphs for the Hexagon tests, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def shape_subgraph_model(path: Path, seed: int = 0) -> Path:
    """Conv → Relu → Reshape(x, Concat(Shape(x)[0], -1)) → MatMul → + Range(0, Shape(y)[1]) * 0.01.

    Every dim is static, so the shape subgraphs (Shape → Gather → Concat, Shape → Gather → Range → Cast) are
    constants — but only once folded: as written, the HTP refuses Shape, Range and everything that depends on them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b1"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(0.01, np.float32), "step"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8 * 8 * 8, 10)).astype(np.float32), "wf")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Shape", ["r1"], ["s1"], name="shape_batch"),
        helper.make_node("Gather", ["s1", "i0"], ["batch"], axis=0, name="gather_batch"),
        helper.make_node("Concat", ["batch", "minus1"], ["flat_shape"], axis=0, name="concat_shape"),
        helper.make_node("Reshape", ["r1", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "wf"], ["logits0"], name="fc"),
        helper.make_node("Shape", ["logits0"], ["s2"], name="shape_classes"),
        helper.make_node("Gather", ["s2", "one"], ["classes"], axis=0, name="gather_classes"),
        helper.make_node("Range", ["zero", "classes", "one"], ["positions"], name="range"),
        helper.make_node("Cast", ["positions"], ["positions_f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["positions_f", "step"], ["bias"], name="scale_bias"),
        helper.make_node("Add", ["logits0", "bias"], ["logits"], name="add_bias"),
    ]
    graph = helper.make_graph(nodes, "shape_subgraph", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def save_calib(folder: Path, shape: tuple[int, ...], n: int = 16, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(folder / f"{i:03d}.npy", rng.uniform(0, 1, shape).astype(np.float32))
    return folder
