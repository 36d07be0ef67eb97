"""Constant(value_int / value_ints / value_float / value_floats) → Constant(value = the same tensor).

torch.onnx's dynamo exporter writes small constants in the list forms, an empty shape as `value_ints = []`. onnxslim
cannot type an empty list ("Could not infer attribute `value_ints` type from empty iterator": the whole optimisation
was skipped on a BERT encoder), and edgeconv's Constant → initializer step reads only `value`. As a tensor (int64 /
float32, the dtypes ONNX defines for these forms) every tool reads it.
"""

from __future__ import annotations

from typing import Any

_FORMS = {"value_int": ("int64", False), "value_ints": ("int64", True), "value_float": ("float32", False),
          "value_floats": ("float32", True)}


def constant_values_to_tensors(model: Any) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
            continue
        attr = node.attribute[0]
        if attr.name not in _FORMS:
            continue
        dtype, is_list = _FORMS[attr.name]
        values = (list(attr.ints) if dtype == "int64" else list(attr.floats)) if is_list else \
            (attr.i if dtype == "int64" else attr.f)
        tensor = numpy_helper.from_array(np.array(values, dtype=dtype), node.output[0])
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", tensor))
        fixed += 1
    return fixed
