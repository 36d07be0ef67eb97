"""Q/DQ placement that TensorRT fuses well (`[quantize.options] placement = "tensorrt"`), and the checks a TensorRT
explicit-quantization graph must pass.

TensorRT's recommendations for explicit quantization (strongly typed networks, TensorRT 10.x and 11.x):
- quantize the *inputs* of weighted ops (Conv, ConvTranspose, Gemm, MatMul), not their outputs, and not every op;
- symmetric int8: zero points 0, per-tensor activation scales, per-channel weight scales on the output-channel axis;
- biases stay float (TensorRT cannot take DequantizeLinear of an int32 bias);
- a residual Add carries Q/DQ on its *skip* branch only, so TensorRT fuses Conv + Add (+ Relu) into one int8 kernel.

ONNX Runtime's quantize_static gets most of this from the profile (op types, symmetric, QuantizeBias = false,
OpTypesToExcludeOutputQuantization); this module does the rest on the protobuf: it names the bias Adds to leave alone
before quantizing, and after quantizing removes the Q/DQ pair ORT puts on the weighted-op side of a residual Add, and
rewires any other op that reads a DQ output (a LayerNorm sharing the residual input, say) back to the float tensor.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from edgeconv.onnx_graph import initializers
from edgeconv.onnx_graph import producers as node_producers

WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
SHAPE_ONLY = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"})
PLACEMENTS = ("tensorrt",)
MIN_OPSET = 13  # per-axis DequantizeLinear


def _constants(model: Any) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    names |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return names


def nodes_to_exclude(float_path: Path) -> list[str]:
    """Adds with a constant input (biases after MatMul, offsets): they stay float. Residual Adds (two activations)
    are quantized, then fixed up by `apply`."""
    import onnx

    model = onnx.load_model(str(float_path), load_external_data=False)
    consts = _constants(model)
    return [n.name for n in model.graph.node if n.op_type == "Add" and n.name and any(i in consts for i in n.input)]


def residual_adds(model: Any) -> set[str]:
    consts = _constants(model)
    return {n.name for n in model.graph.node if n.op_type == "Add" and n.name and len(n.input) == 2
            and not any(i in consts for i in n.input)}


def _from_weighted(tensor: str, producers: dict[str, Any], depth: int = 0) -> bool:
    """Is `tensor` the output of a weighted op, directly or through its bias Add or a reshape (normalisation turns
    MatMul + bias on 3-D inputs into Reshape → Gemm → Reshape)?"""
    node = producers.get(tensor)
    if node is None or depth > 4:
        return False
    if node.op_type in WEIGHTED:
        return True
    if node.op_type in SHAPE_ONLY:
        return _from_weighted(node.input[0], producers, depth + 1)
    return node.op_type == "Add" and any(_from_weighted(i, producers, depth + 1) for i in node.input)


def _qdq_source(tensor: str, producers: dict[str, Any]) -> str | None:
    """The float tensor behind a DQ(Q(x)) pair that produces `tensor`, or None."""
    dq = producers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producers.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return q.input[0]


def _fix_residual_adds(model: Any, adds: set[str]) -> int:
    producers = node_producers(model.graph)
    removed = 0
    for node in model.graph.node:
        if node.name not in adds:
            continue
        branches = [(i, t, _qdq_source(t, producers)) for i, t in enumerate(node.input)]
        weighted = [b for b in branches if _from_weighted(b[2] or b[1], producers)]
        if len(weighted) == len(branches):  # both from weighted ops: keep Q/DQ on one of them
            weighted = weighted[:1]
        for index, _, raw in weighted:
            if raw is not None:
                node.input[index] = raw
                removed += 1
    return removed


def _restrict_consumers(model: Any, adds: set[str]) -> int:
    """Only weighted ops and residual Adds read DQ outputs; other readers get the float tensor back."""
    producers = node_producers(model.graph)
    rewired = 0
    for node in model.graph.node:
        if node.op_type in QDQ or node.op_type in WEIGHTED or node.name in adds:
            continue
        for index, tensor in enumerate(node.input):
            raw = _qdq_source(tensor, producers)
            if raw is not None:
                node.input[index] = raw
                rewired += 1
    return rewired


def prune(model: Any) -> None:
    """Drop Q/DQ nodes nobody reads, then initializers nobody uses (ORT leaves their scales behind)."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in QDQ and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def strip_unused_opsets(model: Any) -> list[str]:
    """quant_pre_process / ORT-optimised models import domains no node uses (com.microsoft, org.pytorch.aten ...)."""
    used = {n.domain or "" for n in model.graph.node}
    drop = [o for o in model.opset_import if (o.domain or "") not in used and (o.domain or "") not in ("", "ai.onnx")]
    for o in drop:
        model.opset_import.remove(o)
    return [o.domain for o in drop]


def apply(path: Path) -> dict[str, int]:
    """Rewrite the quantized model at `path` in place for TensorRT; return what changed."""
    import onnx

    model = onnx.load_model(str(path))
    adds = residual_adds(model)
    removed = _fix_residual_adds(model, adds)
    rewired = _restrict_consumers(model, adds)
    prune(model)
    strip_unused_opsets(model)
    onnx.save_model(model, str(path))
    return {"residual_branch_qdq_removed": removed, "float_consumers_rewired": rewired}


def _init_array(inits: dict[str, Any], name: str) -> Any:
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def describe(model: Any) -> dict[str, Any]:
    """Facts about a model's Q/DQ graph for the manifest and the tests: counts, which op types read DQ outputs, which
    ops a Q follows, zero points, per-channel weights, and the problems TensorRT would reject."""
    import numpy as np

    from edgeconv.normalise import default_opset

    inits = initializers(model.graph)
    producers = node_producers(model.graph)
    fed: dict[str, int] = defaultdict(int)
    q_after: dict[str, int] = defaultdict(int)
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    per_channel_weights = per_tensor_weights = 0
    zero_point_types: set[str] = set()
    problems: list[str] = []
    for node in model.graph.node:
        if node.op_type in QDQ:
            counts[node.op_type] += 1
            zp = _init_array(inits, node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zp is not None:
                zero_point_types.add(str(zp.dtype))
                if np.any(zp != 0):
                    problems.append(f"{node.name or node.output[0]}: zero point is not 0 (TensorRT is symmetric only)")
            scale = _init_array(inits, node.input[1])
            if scale is None:
                problems.append(f"{node.name or node.output[0]}: scale is not an initializer")
            if node.op_type == "DequantizeLinear" and node.input[0] in inits:
                weight = _init_array(inits, node.input[0])
                if weight.dtype == np.int32:
                    problems.append(f"{node.name or node.output[0]}: int32 DequantizeLinear (quantized bias)")
                if scale is not None and scale.size > 1:
                    per_channel_weights += 1
                else:
                    per_tensor_weights += 1
            elif scale is not None and scale.size > 1:
                problems.append(f"{node.name or node.output[0]}: per-channel scale on an activation")
            if node.op_type == "QuantizeLinear":
                src = producers.get(node.input[0])
                q_after[src.op_type if src is not None else "<input>"] += 1
            continue
        for tensor in node.input:
            src = producers.get(tensor)
            if src is not None and src.op_type == "DequantizeLinear":
                fed[node.op_type] += 1
    bad_types = zero_point_types - {"int8"}
    if bad_types:
        problems.append(f"zero points of type {', '.join(sorted(bad_types))} (TensorRT takes int8)")
    if counts["DequantizeLinear"] and default_opset(model) < MIN_OPSET:
        problems.append(f"opset {default_opset(model)} < {MIN_OPSET} (per-channel DequantizeLinear)")
    return {**counts, "dq_feeds": dict(sorted(fed.items())), "q_after": dict(sorted(q_after.items())),
            "per_channel_weights": per_channel_weights, "per_tensor_weights": per_tensor_weights,
            "zero_point_types": sorted(zero_point_types), "problems": problems}
