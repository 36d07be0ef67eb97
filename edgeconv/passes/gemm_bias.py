"""Gemm with a scalar bias → Gemm with one bias value per output column.

onnxslim fuses MatMul + Add(constant) into Gemm, and when the constant is a scalar (`x @ w + 1e-10`, the epsilon of a
log-mel front end) the Gemm's C is a 0-d tensor. That is valid ONNX (C broadcasts), but ONNX Runtime's QDQ quantizer
indexes the bias per output channel and fails on it ("too many indices for array: array is 0-dimensional"). Broadcast
to [N], the Gemm computes the same thing and quantizes like any other.
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import initializers


def expand_scalar_gemm_bias(model: Any) -> int:
    import numpy as np
    from onnx import numpy_helper

    inits = initializers(model.graph)
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in inits or node.input[1] not in inits:
            continue
        bias = numpy_helper.to_array(inits[node.input[2]])
        if bias.size != 1 or bias.ndim > 1 and bias.shape != (1,):
            continue
        weight = inits[node.input[1]]
        trans_b = next((int(a.i) for a in node.attribute if a.name == "transB"), 0)
        columns = int(weight.dims[0] if trans_b else weight.dims[1])
        vector = numpy_helper.from_array(np.full(columns, bias.reshape(()), dtype=bias.dtype),
                                         f"{node.input[2]}_per_column" if users[node.input[2]] > 1 else node.input[2])
        if users[node.input[2]] > 1:  # shared with another node: that one keeps the scalar
            model.graph.initializer.append(vector)
            node.input[2] = vector.name
        else:
            inits[node.input[2]].CopyFrom(vector)
        fixed += 1
    return fixed
