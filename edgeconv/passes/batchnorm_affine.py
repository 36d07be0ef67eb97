"""A BatchNormalization that no Conv absorbed → Mul(x, scale) + Add(shift), per channel: the same result.

Normalisation folds a BatchNormalization into the Conv before it; one that follows anything else stays (a BatchNorm1d
over log-mel features, after a Linear, at a network's input). onnxruntime-qnn's quantized BatchNormalization can be
wrong on the HTP simulator: with the same statistics on every channel (the corpus keyword spotter's fixed log-mel
normalisation: gamma 1, beta 0, mean -4, var 9) its output came out at -6.7 dB against the same QDQ model on ONNX
Runtime (45 dB up to its input), and the whole model at -4.5 dB; random per-channel statistics measured right (34 dB),
so the encoding of a constant per-channel operand is the likely cause. Written as the affine map it is in
inference, scale = gamma / sqrt(var + eps) and shift = beta - mean * scale, broadcast on axis 1, it is a Mul and an Add
with constant per-channel operands, which the quantizer and the HTP take like any other.
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import drop_unused_initializers, tensor_ranks


def batchnorm_to_affine(model: Any) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    rank = tensor_ranks(model)
    fixed = 0
    for node in list(graph.node):
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        params = node.input[1:5]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(params) != 4 or any(p not in inits for p in params) or attrs.get("training_mode", 0) \
                or rank.get(node.input[0], 0) < 2:
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[p]).astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        shift = beta - mean * scale
        dtype = numpy_helper.to_array(inits[params[0]]).dtype
        shape = (-1,) + (1,) * (rank[node.input[0]] - 2)  # channels on axis 1, broadcast over the rest
        base = node.name or node.output[0]
        scale_init = numpy_helper.from_array(scale.reshape(shape).astype(dtype), f"{base}_affine_scale")
        shift_init = numpy_helper.from_array(shift.reshape(shape).astype(dtype), f"{base}_affine_shift")
        graph.initializer.extend([scale_init, shift_init])
        scaled = f"{base}_affine_scaled"
        mul = helper.make_node("Mul", [node.input[0], scale_init.name], [scaled], name=f"{base}_affine_mul")
        add = helper.make_node("Add", [scaled, shift_init.name], [node.output[0]], name=f"{base}_affine_add")
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, add)
        graph.node.insert(position, mul)
        fixed += 1
    if fixed:  # the BatchNorms' own statistics, unless something else (an If / Loop body too) still reads them
        drop_unused_initializers(graph)
    return fixed

