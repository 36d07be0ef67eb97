"""CastLike(x, like) → Cast(x, to = dtype of `like`), where that dtype is known.

torch.onnx's dynamo exporter writes CastLike for scalars it broadcasts against a tensor (opset 15+). It is a standard
op, but onnx2tf has no converter for it ("No module named 'onnx2tf.ops.CastLike'") and a constant CastLike is not
folded by onnxslim. As a Cast (the same result, the dtype written out), every converter takes it and constant folding
removes it.
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import tensor_types


def castlike_to_cast(model: Any) -> int:
    from onnx import helper

    if not any(n.op_type == "CastLike" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return 0
    dtypes = tensor_types(model)
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "CastLike" or node.domain not in ("", "ai.onnx") or not dtypes.get(node.input[1]):
            continue
        saturate = [a for a in node.attribute if a.name == "saturate"]
        to = dtypes[node.input[1]]
        source = node.input[0]
        del node.input[:]
        node.input.append(source)
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("to", to))
        if saturate and to in (17, 18, 19, 20):  # float8 types only
            node.attribute.append(saturate[0])
        node.op_type = "Cast"
        fixed += 1
    return fixed
