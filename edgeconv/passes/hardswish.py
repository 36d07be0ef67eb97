"""Hard-swish / hard-sigmoid written out in elementary ops → one HardSigmoid or HardSwish node.

tf2onnx (Keras MobileNetV3: `x * relu6(x + 3) / 6`, written Add → Clip → Mul(1/6) → Mul), paddle2onnx and hand-written
models spell the gates out; onnxslim keeps them. Quantized, every one of those ops is its own requantization (the
`x + 3` in 0..9, the clip, the /6 in 0..1, the product: four uint8 scales for one activation) and its own kernel.
Rewritten:

- `clip(x + 3, 0, 6) / 6` (or `* (1/6)`, `relu6` being Clip(0, 6)) → HardSigmoid(x, alpha = 1/6, beta = 0.5): the
  squeeze-excitation gate becomes HardSigmoid → Mul;
- `x * hardsigmoid(x)` with that alpha / beta (a HardSigmoid node or the gate above) → HardSwish(x) (opset 14+);
- `(x * clip(x + 3, 0, 6)) / 6` (the product first, then / 6 or * 1/6) → HardSwish(x) (opset 14+).

Only where every intermediate tensor has that one reader and is not a graph output; constants must be initializers
holding one value (scalars or [1]). Below opset 14 the HardSigmoid rewrite is still done (HardSigmoid is opset 6).
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import drop_unused_initializers, subgraph_reads

HARDSWISH_OPSET = 14
_SIXTH = 1.0 / 6.0


def fuse_hardswish(model: Any) -> int:
    """Fuse in place; return the number of patterns replaced (a hard-swish written out counts once, though it goes
    through a HardSigmoid on the way; a HardSigmoid node of the model's own made a HardSwish counts too)."""
    opset = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    made: set[str] = set()  # outputs of the HardSigmoid nodes written here
    count = 0
    while (step := _one_rewrite(model, opset >= HARDSWISH_OPSET)) is not None:
        op, output, consumed = step
        if op == "HardSigmoid":
            made.add(output)
        count += 0 if consumed in made else 1
    return count


def _one_rewrite(model: Any, allow_hardswish: bool) -> tuple[str, str, str] | None:
    """One rewrite: (op written, its output, the HardSigmoid output it replaced or ""), or None when none is left."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output} | subgraph_reads(graph)  # read there: never rewritten
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def scalar(name: str) -> float | None:
        if name not in inits:
            return None
        array = numpy_helper.to_array(inits[name])
        return float(array.reshape(())) if array.size == 1 and array.ndim <= 1 and array.dtype.kind == "f" else None

    def near(value: float | None, want: float) -> bool:
        return value is not None and abs(value - want) <= 1e-5 * max(1.0, abs(want))

    def inner(name: str, op: str) -> Any | None:
        """The producer of `name` if it is a standard `op` whose output is read only once and not a graph output."""
        node = producer.get(name)
        ok = node is not None and node.op_type == op and node.domain in ("", "ai.onnx") and readers.get(name) == 1
        return node if ok and name not in outputs else None

    def sixth_of(node: Any) -> str | None:
        """`node` is t / 6 or t * (1/6): return t."""
        if node.op_type == "Div" and len(node.input) == 2 and near(scalar(node.input[1]), 6.0):
            return node.input[0]
        if node.op_type == "Mul" and len(node.input) == 2:
            for i in (0, 1):
                if near(scalar(node.input[1 - i]), _SIXTH):
                    return node.input[i]
        return None

    def relu6_of_x_plus_3(name: str) -> tuple[str, list[Any]] | None:
        """`name` is clip(x + 3, 0, 6): return x and the two nodes."""
        clip = inner(name, "Clip")
        if clip is None:
            return None
        attrs = {a.name: a.f for a in clip.attribute}
        low = scalar(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else attrs.get("min")
        high = scalar(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else attrs.get("max")
        add = inner(clip.input[0], "Add") if near(low, 0.0) and near(high, 6.0) else None
        if add is None or len(add.input) != 2:
            return None
        for i in (0, 1):
            if near(scalar(add.input[1 - i]), 3.0) and add.input[i] not in inits:
                return add.input[i], [add, clip]
        return None

    def hardsigmoid_of(name: str) -> tuple[str, list[Any]] | None:
        """`name` is hardsigmoid(x) with alpha 1/6, beta 0.5 (a node, or the gate written out): x and its nodes."""
        node = inner(name, "HardSigmoid")
        if node is not None:
            attrs = {a.name: a.f for a in node.attribute}
            if near(attrs.get("alpha", 0.2), _SIXTH) and near(attrs.get("beta", 0.5), 0.5):
                return node.input[0], [node]
        return None

    def rewrite(last: Any, op: str, x: str, dead: list[Any]) -> tuple[str, str, str]:
        from onnx import helper

        del last.input[:]
        last.input.append(x)
        del last.attribute[:]
        if op == "HardSigmoid":
            last.attribute.extend([helper.make_attribute("alpha", _SIXTH), helper.make_attribute("beta", 0.5)])
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
            # clip(x + 3, 0, 6) / 6 → HardSigmoid(x)
            found = relu6_of_x_plus_3(gate)
            if found is not None:
                return rewrite(node, "HardSigmoid", found[0], found[1])
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
