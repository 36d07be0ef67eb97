"""Hard-swish / hard-sigmoid written out in elementary ops → one HardSigmoid or HardSwish node.

tf2onnx (Keras MobileNetV3: `x * relu6(x + 3) / 6`, written Add → Clip → Mul(1/6) → Mul), paddle2onnx and hand-written
models spell the gates out; onnxslim keeps them. Quantized, every one of those ops is its own requantization (the
`x + 3` in 0..9, the clip, the /6 in 0..1, the product: four uint8 scales for one activation) and its own kernel.
Rewritten:

- `clip(x + 3, 0, 6) / 6` (or `* (1/6)`, `relu6` being Clip(0, 6)) → HardSigmoid(x, alpha = 1/6, beta = 0.5): the
  squeeze-excitation gate becomes HardSigmoid → Mul; any other offset b too (beta = b / 6), and none at all: tf2onnx
  folds an SE gate's `+ 3` into the Conv's bias when its transpose optimizer runs (trained Keras MobileNetV3), leaving
  `clip(conv, 0, 6) / 6` = HardSigmoid(conv, 1/6, 0);
- `x * hardsigmoid(x)` with that alpha / beta (a HardSigmoid node or the gate above) → HardSwish(x) (opset 14+);
- `(x * clip(x + 3, 0, 6)) / 6` (the product first, then / 6 or * 1/6) → HardSwish(x) (opset 14+).

Only where every intermediate tensor has that one reader and is not a graph output; constants must be initializers
holding one value (scalars, [1], or [1, 1, 1, 1] as tf2onnx writes them, when no longer than the tensor's rank). Below opset 14 the HardSigmoid rewrite is still done (HardSigmoid is opset 6).
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import initializers, producers
from edgeconv.passes._reads import drop_unused_initializers, subgraph_reads, tensor_ranks

HARDSWISH_OPSET = 14
_SIXTH = 1.0 / 6.0


def fuse_hardswish(model: Any) -> int:
    """Fuse in place; return the number of patterns replaced (a hard-swish written out counts once, though it goes
    through a HardSigmoid on the way; a HardSigmoid node of the model's own made a HardSwish counts too)."""
    opset = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    made: set[str] = set()  # outputs of the HardSigmoid nodes written here
    count = 0
    ranks = tensor_ranks(model)  # the rewrites keep every remaining tensor's rank
    while (step := _one_rewrite(model, opset >= HARDSWISH_OPSET, ranks)) is not None:
        op, output, consumed = step
        if op == "HardSigmoid":
            made.add(output)
        count += 0 if consumed in made else 1
    return count


def _one_rewrite(model: Any, allow_hardswish: bool, ranks: dict[str, int]) -> tuple[str, str, str] | None:
    """One rewrite: (op written, its output, the HardSigmoid output it replaced or ""), or None when none is left."""
    from onnx import numpy_helper

    graph = model.graph
    inits = initializers(graph)
    outputs = {o.name for o in graph.output} | subgraph_reads(graph)  # read there: never rewritten
    producer = producers(graph)
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def scalar(name: str, beside: str) -> float | None:
        """The one value of initializer `name`, read next to tensor `beside`: a scalar or [1], or of any shape of ones
        no longer than `beside`'s rank (so that removing it cannot change an output's rank)."""
        if name not in inits:
            return None
        array = numpy_helper.to_array(inits[name])
        if array.size != 1 or array.dtype.kind != "f" or array.ndim > max(1, ranks.get(beside, 0)):
            return None
        return float(array.reshape(()))

    def near(value: float | None, want: float) -> bool:
        return value is not None and abs(value - want) <= 1e-5 * max(1.0, abs(want))

    def inner(name: str, op: str) -> Any | None:
        """The producer of `name` if it is a standard `op` whose output is read only once and not a graph output."""
        node = producer.get(name)
        ok = node is not None and node.op_type == op and node.domain in ("", "ai.onnx") and readers.get(name) == 1
        return node if ok and name not in outputs else None

    def sixth_of(node: Any) -> str | None:
        """`node` is t / 6 or t * (1/6): return t."""
        if node.op_type == "Div" and len(node.input) == 2 and near(scalar(node.input[1], node.input[0]), 6.0):
            return node.input[0]
        if node.op_type == "Mul" and len(node.input) == 2:
            for i in (0, 1):
                if near(scalar(node.input[1 - i], node.input[i]), _SIXTH):
                    return node.input[i]
        return None

    def relu6_of(name: str) -> tuple[str, float, list[Any]] | None:
        """`name` is clip(x + b, 0, 6) or clip(x, 0, 6) (b = 0: an exporter folded the `+ 3` into the Conv before):
        return x, b and the nodes."""
        clip = inner(name, "Clip")
        if clip is None:
            return None
        attrs = {a.name: a.f for a in clip.attribute}
        low = scalar(clip.input[1], clip.input[0]) if len(clip.input) > 1 and clip.input[1] else attrs.get("min")
        high = scalar(clip.input[2], clip.input[0]) if len(clip.input) > 2 and clip.input[2] else attrs.get("max")
        if not (near(low, 0.0) and near(high, 6.0)):
            return None
        add = inner(clip.input[0], "Add")
        if add is not None and len(add.input) == 2:
            for i in (0, 1):
                offset = scalar(add.input[1 - i], add.input[i])
                if offset is not None and add.input[i] not in inits:
                    return add.input[i], offset, [add, clip]
        return clip.input[0], 0.0, [clip]

    def relu6_of_x_plus_3(name: str) -> tuple[str, list[Any]] | None:
        """`name` is clip(x + 3, 0, 6): return x and the two nodes."""
        found = relu6_of(name)
        return (found[0], found[2]) if found is not None and near(found[1], 3.0) and len(found[2]) == 2 else None

    def hardsigmoid_of(name: str) -> tuple[str, list[Any]] | None:
        """`name` is hardsigmoid(x) with alpha 1/6, beta 0.5 (a node, or the gate written out): x and its nodes."""
        node = inner(name, "HardSigmoid")
        if node is not None:
            attrs = {a.name: a.f for a in node.attribute}
            if near(attrs.get("alpha", 0.2), _SIXTH) and near(attrs.get("beta", 0.5), 0.5):
                return node.input[0], [node]
        return None

    def rewrite(last: Any, op: str, x: str, dead: list[Any], beta: float = 0.5) -> tuple[str, str, str]:
        from onnx import helper

        del last.input[:]
        last.input.append(x)
        del last.attribute[:]
        if op == "HardSigmoid":
            last.attribute.extend([helper.make_attribute("alpha", _SIXTH), helper.make_attribute("beta", beta)])
        last.op_type, last.domain = op, ""
        consumed = next((n.output[0] for n in dead if n.op_type == "HardSigmoid"), "")
        for node in dead:
            graph.node.remove(node)
        drop_unused_initializers(graph)  # the 3, 0, 6 and 1/6 nobody reads any more
        return op, last.output[0], consumed

    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        gate = sixth_of(node)
        if gate is not None:
            # clip(x + b, 0, 6) / 6 → HardSigmoid(x, alpha = 1/6, beta = b/6)
            gated = relu6_of(gate)
            if gated is not None:
                return rewrite(node, "HardSigmoid", gated[0], gated[2], beta=gated[1] / 6.0)
            # (x * clip(x + 3, 0, 6)) / 6 → HardSwish(x)
            product = inner(gate, "Mul")
            if allow_hardswish and product is not None and len(product.input) == 2:
                for i in (0, 1):
                    found = relu6_of_x_plus_3(product.input[i])
                    if found is not None and found[0] == product.input[1 - i]:
                        return rewrite(node, "HardSwish", found[0], [product, *found[1]])
        if allow_hardswish and node.op_type == "Mul" and len(node.input) == 2:
            # x * hardsigmoid(x) → HardSwish(x)
            for i in (0, 1):
                found = hardsigmoid_of(node.input[i])
                if found is not None and found[0] == node.input[1 - i]:
                    return rewrite(node, "HardSwish", found[0], found[1])
    return None
