"""MaxPool with ceil_mode or pads → Pad(mode = edge) + MaxPool without either: the same result, no -inf anywhere.

onnx2tf pads a ceil-mode (or padded) MaxPool with -inf before a VALID pool. In float that is exact; in a full-int8
TFLite the pad's -inf lands in the tensor's calibrated range, the scale is lost, and the model is garbage: a
conv → MaxPool(3, 2, ceil_mode=True) block (MTCNN's P/R/O-nets) measured SNR 0 dB, and the R-Net was refused by
XNNPACK at prepare. Every pooling window holds at least one real element (ONNX pads are smaller than the kernel), and
edge padding repeats the border element, which is in that window: the maximum does not change.
"""

from __future__ import annotations

from typing import Any


def maxpool_without_ceil(model: Any) -> int:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    pools = [n for n in model.graph.node if n.op_type == "MaxPool" and n.domain in ("", "ai.onnx") and len(n.output) == 1]
    if not pools:
        return 0
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    fixed = 0
    for node in pools:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        rank = len(kernel)
        pads = list(attrs.get("pads", [0] * 2 * rank))
        ceil = int(attrs.get("ceil_mode", 0))
        if (not ceil and not any(pads)) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
                or node.input[0] not in shapes or node.output[0] not in shapes:
            continue
        strides = list(attrs.get("strides", [1] * rank))
        dilations = list(attrs.get("dilations", [1] * rank))
        if any(p >= (k - 1) * d + 1 for p, k, d in zip(pads, kernel * 2, dilations * 2)):
            continue  # a window could hold padding only: edge values would change it
        spatial_in = shapes[node.input[0]][2:]
        spatial_out = shapes[node.output[0]][2:]
        begin, end = pads[:rank], pads[rank:]
        for i in range(rank):  # the end padding the output size needs (ceil_mode's extra included)
            needed = (spatial_out[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1
            end[i] = max(0, needed - spatial_in[i] - begin[i])
        base = node.name or node.output[0]
        pad_values = numpy_helper.from_array(np.array([0, 0, *begin, 0, 0, *end], dtype=np.int64), f"{base}_edge_pads")
        model.graph.initializer.append(pad_values)
        padded = f"{base}_edge_padded"
        pad = helper.make_node("Pad", [node.input[0], pad_values.name], [padded], name=f"{base}_edge_pad", mode="edge")
        keep = [a for a in node.attribute if a.name not in ("pads", "ceil_mode")]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.input[0] = padded
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, pad)
        fixed += 1
    return fixed
