"""GatherND with constant indices → Reshape + Gather (the same elements, a Gather the NPUs take).

transformers' mask builders index `attention_mask[batch_idx, kv_idx]`; with static shapes the indices become a
constant, and the exported GatherND is refused by the Hexagon HTP ("Failed to create GatherND node"), which then
leaves the BERT-style encoder off the NPU. With the first k axes of the data flattened into one, the k-tuples are
flat positions: Reshape(data, [prod(dims[:k]), *dims[k:]]) → Gather(axis 0, constant positions).
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import initializers


def gathernd_to_gather(model: Any) -> int:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    candidates = [n for n in model.graph.node if n.op_type == "GatherND" and n.domain in ("", "ai.onnx")]
    if not candidates:
        return 0
    inits = initializers(model.graph)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    fixed = 0
    for node in candidates:
        batch_dims = next((int(a.i) for a in node.attribute if a.name == "batch_dims"), 0)
        data, indices = node.input[0], node.input[1]
        if batch_dims or indices not in inits or data not in shapes:
            continue
        index = numpy_helper.to_array(inits[indices]).astype(np.int64)
        dims = shapes[data]
        k = index.shape[-1]
        if k > len(dims) or k == 0:
            continue
        lead = np.array(dims[:k], dtype=np.int64)
        index = np.where(index < 0, index + lead, index)  # GatherND takes negative indices
        if (index < 0).any() or (index >= lead).any():
            continue
        strides = np.cumprod([1, *dims[:k][::-1]])[:-1][::-1].astype(np.int64)
        flat = (index * strides).sum(axis=-1)
        base = node.name or node.output[0]
        shape_name, flat_name, folded = f"{base}_flat_shape", f"{base}_flat_positions", f"{base}_flattened"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.array([int(np.prod(lead)), *dims[k:]], dtype=np.int64), shape_name),
            numpy_helper.from_array(flat, flat_name)])
        reshape = helper.make_node("Reshape", [data, shape_name], [folded], name=f"{base}_reshape")
        gather = helper.make_node("Gather", [folded, flat_name], list(node.output), name=f"{base}_gather", axis=0)
        position = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(position, gather)
        model.graph.node.insert(position, reshape)
        fixed += 1
    return fixed
