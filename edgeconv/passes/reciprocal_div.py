"""Reciprocal(x) → Div(1, x), the 1 an initializer: the same result, and a numerator the quantizer quantizes.

onnxruntime-qnn builds a quantized Reciprocal as an HTP ElementWiseDivide whose numerator is a static tensor it makes
itself: the bytes of the float 1.0 labelled with the *input's* integer type and quantization (ReciprocalOpBuilder).
Read as uint8 / uint16 those bytes are 0, so the HTP divides (0 - zero point) x scale by x. Keras's LayerNormalization,
exported by tf2onnx, computes 1 / sqrt(var + eps) as Sqrt → Reciprocal: the subclassed corpus model's head measured
0.8 dB on the HTP simulator where the same QDQ model gave 36.2 dB on ONNX Runtime. As a Div with a constant numerator,
the numerator is an initializer the quantizer gives its own scale and the HTP receives as ordinary static data.
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import tensor_types


def reciprocal_to_div(model: Any) -> int:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    nodes = [n for n in model.graph.node if n.op_type == "Reciprocal" and n.domain in ("", "ai.onnx")]
    if not nodes:
        return 0
    dtypes = tensor_types(model)
    taken = {t.name for t in model.graph.initializer}
    ones: dict[int, str] = {}  # one numerator per element type, shared by every Reciprocal of that type
    fixed = 0
    for node in nodes:
        elem = dtypes.get(node.input[0], onnx.TensorProto.FLOAT) or onnx.TensorProto.FLOAT
        if elem not in ones:
            name = "reciprocal_one" if elem == onnx.TensorProto.FLOAT else f"reciprocal_one_{elem}"
            while name in taken:
                name += "_"
            taken.add(name)
            value = np.array(1, dtype=helper.tensor_dtype_to_np_dtype(elem))
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            ones[elem] = name
        divisor = node.input[0]
        del node.input[:]
        node.input.extend([ones[elem], divisor])
        node.op_type = "Div"
        fixed += 1
    return fixed
