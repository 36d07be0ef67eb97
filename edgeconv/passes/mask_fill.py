"""Attention-mask fill values of -3.4e38 (or -inf) → MASK_FILL (-100).

Transformers exporters build the additive attention mask as `where(mask, 0, finfo(float32).min)` (transformers) or
`(1 - mask) * -3.4e38`, added to the attention scores before Softmax. In float that is exact, but a quantizer then
calibrates the Add's output over [-3.4e38, max score]: one uint16 step is 5e33, every score rounds to the same value
and attention becomes uniform. ONNX Runtime's CPU kernels happen to give the uniform average over the unmasked
tokens; the Hexagon HTP overflows the scale and averages over every token (BERT-tiny at hexagon-int16: 6.1 dB). In
fp16 the fill is -inf, and a fully masked row gives NaN.

Any fill at or below MASK_FILL does what the mask is for: a score s becomes s - 100, and exp(-100) is 4e-44 of the
unmasked terms (scores of trained models stay well inside +-30), so the float model computes the same outputs to
float32 rounding; a quantizer's range is then [-100, max score], 0.0017 per uint16 step. The pass rewrites a float
constant whose elements are all 0 or at most FILL_THRESHOLD, when it flows through mask arithmetic into a Softmax.
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import consumers

MASK_FILL = -100.0
FILL_THRESHOLD = -1e9  # what exporters write: -3.4028235e38 (finfo.min), -1e30, -inf; -10000 (old BERTs) is left alone
MASK_OPS = frozenset({"Where", "Mul", "Add", "Sub", "Cast", "Expand", "Unsqueeze", "Reshape", "Squeeze", "Tile"})
MAX_HOPS = 6


def bound_mask_fill(model: Any) -> int:
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    users = consumers(graph)
    fixed = 0
    for init in graph.initializer:
        if init.data_type not in (1, 10, 16):  # float, float16, bfloat16
            continue
        values = numpy_helper.to_array(init)
        fill = values <= FILL_THRESHOLD
        if values.size > 4096 or not fill.any() or not np.all(fill | (values == 0)):
            continue
        if not _reaches_softmax(init.name, users) or any(n.op_type not in MASK_OPS for n in users.get(init.name, ())):
            continue  # a constant also used outside mask arithmetic keeps its value
        init.CopyFrom(numpy_helper.from_array(np.where(fill, np.asarray(MASK_FILL, values.dtype), values), init.name))
        fixed += 1
    return fixed


def _reaches_softmax(name: str, users: dict[str, list[Any]]) -> bool:
    """Whether `name` flows into a Softmax input through at most MAX_HOPS mask-arithmetic nodes."""
    frontier, seen = [name], {name}
    for _ in range(MAX_HOPS):
        nxt = []
        for tensor in frontier:
            for node in users.get(tensor, ()):
                if node.op_type == "Softmax":
                    return True
                if node.op_type not in MASK_OPS:
                    continue
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        nxt.append(out)
        frontier = nxt
    return False
