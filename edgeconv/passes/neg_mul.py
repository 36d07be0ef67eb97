"""Neg(x) → Mul(x, -1), the -1 an initializer of x's element type: the same result (exact in float and in the signed
integer types), written as an op every integer backend has.

TFLite's full-integer quantizer has no int8 NEG: Keras's LayerNormalization, exported by tf2onnx, computes its offset
as beta - mean · scale through a Neg of the mean, and onnx2tf keeps it as NEG, which stayed float in the subclassed
corpus model's tflite-int8 (exit 4, "1 op(s) stayed float in the full-integer model: NEG"). A MUL by a constant is
quantized like any other.
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import tensor_types


def neg_to_mul(model: Any) -> int:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    nodes = [n for n in model.graph.node if n.op_type == "Neg" and n.domain in ("", "ai.onnx")]
    if not nodes:
        return 0
    dtypes = tensor_types(model)
    taken = {t.name for t in model.graph.initializer}
    minus_ones: dict[int, str] = {}  # one constant per element type, shared by every Neg of that type
    fixed = 0
    for node in nodes:
        elem = dtypes.get(node.input[0], onnx.TensorProto.FLOAT) or onnx.TensorProto.FLOAT
        if elem not in minus_ones:
            name = "neg_minus_one" if elem == onnx.TensorProto.FLOAT else f"neg_minus_one_{elem}"
            while name in taken:
                name += "_"
            taken.add(name)
            value = np.array(-1, dtype=helper.tensor_dtype_to_np_dtype(elem))
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            minus_ones[elem] = name
        node.input.append(minus_ones[elem])
        node.op_type = "Mul"
        fixed += 1
    return fixed
