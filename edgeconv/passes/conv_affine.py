"""Constant affine ops after a Conv folded into the Conv: Conv → Mul(c) → Add(d) becomes one Conv with W·c, b·c + d.

paddle2onnx's OCR backbones keep 28 such blocks (a scalar Mul then a scalar Add after each Conv), tf2onnx leaves the
per-channel Mul / Add of a Keras BatchNormalization after a depthwise Conv when its transpose optimizer gives up, and
onnxslim folds neither. Quantized, each op is one more requantization (its own uint8 scale) and one more kernel; folded,
the Conv's int8 weights and int32 bias carry it for free.

Folded, one at a time until nothing is left: Mul, Div (x / c), Add and Sub (x - c) whose other input is an initializer
that is a scalar or broadcasts along the Conv's output channels only, directly after the Conv or after one Transpose
(tf2onnx's NCHW → NHWC: the channel axis is found through the permutation). The Conv's output (and the Transpose's)
must have no other consumer and must not be a graph output. Shared weights are copied, never changed for another node.
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import consumers, initializers
from edgeconv.passes._reads import drop_unused_initializers, subgraph_reads

AFFINE_OPS = frozenset({"Mul", "Div", "Add", "Sub"})


def fold_conv_affine(model: Any) -> int:
    """Fold in place; return how many affine nodes were folded into a Conv."""
    folded = 0
    while True:
        step = _fold_one_round(model)
        if not step:
            return folded
        folded += step


def _fold_one_round(model: Any) -> int:
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = initializers(graph)
    inner_reads = subgraph_reads(graph)  # read inside an If / Loop body: never rewritten or renamed
    outputs = {o.name for o in graph.output} | inner_reads
    readers = consumers(graph)

    def only_consumer(name: str) -> Any | None:
        users = readers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    removed: list[Any] = []
    for conv in list(graph.node):
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or len(conv.input) < 2 \
                or conv.input[1] not in inits or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits):
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.dtype not in (np.float32, np.float16, np.float64) or weight.ndim < 3:
            continue
        channels, rank = weight.shape[0], weight.ndim
        last, channel_axis = conv.output[0], 1
        node = only_consumer(last)
        if node is not None and node.op_type == "Transpose":
            perm = [int(p) for a in node.attribute if a.name == "perm" for p in a.ints]
            if len(perm) != rank:
                continue
            channel_axis, last = perm.index(1), node.output[0]
            node = only_consumer(last)
        if node is None or node.op_type not in AFFINE_OPS or node.domain not in ("", "ai.onnx") \
                or node.output[0] in inner_reads:
            continue
        const_name = node.input[1] if node.input[0] == last else node.input[0]
        if const_name not in inits or (node.op_type in ("Div", "Sub") and node.input[0] != last):
            continue
        vector = _per_channel(numpy_helper.to_array(inits[const_name]), rank, channel_axis, channels)
        if vector is None or (node.op_type == "Div" and not np.all(vector != 0)):
            continue
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 and conv.input[2]
                else np.zeros(channels, np.float64))
        w = weight.astype(np.float64)
        if node.op_type in ("Mul", "Div"):
            scale = 1.0 / vector if node.op_type == "Div" else vector
            w = w * scale.reshape((-1,) + (1,) * (rank - 1))
            bias = bias * scale
        else:
            bias = bias + vector if node.op_type == "Add" else bias - vector
        _set(model, conv, 1, w.astype(weight.dtype), inits, readers)
        if len(conv.input) > 2 and conv.input[2]:
            _set(model, conv, 2, bias.astype(weight.dtype), inits, readers)
        else:
            while len(conv.input) < 3:
                conv.input.append("")
            name = _unique(f"{conv.output[0]}_folded_bias", inits)
            graph.initializer.append(numpy_helper.from_array(bias.astype(weight.dtype), name))
            inits[name] = graph.initializer[-1]
            conv.input[2] = name
        _bypass(model, node, last, readers)
        removed.append(node)
        break  # the maps are stale now: the next round rebuilds them
    for node in removed:
        graph.node.remove(node)
    drop_unused_initializers(graph)
    return len(removed)


def _per_channel(const: Any, rank: int, channel_axis: int, channels: int) -> Any | None:
    """The constant as one float64 value per output channel, or None when it broadcasts along any other axis (or would
    raise the output's rank, or is not float)."""
    import numpy as np

    if const.dtype.kind != "f" or const.ndim > rank:
        return None
    if const.size == 1:
        return np.full(channels, float(const.reshape(())), np.float64)
    shape = (1,) * (rank - const.ndim) + const.shape
    if any(d != 1 for i, d in enumerate(shape) if i != channel_axis) or shape[channel_axis] != channels:
        return None
    return const.reshape(channels).astype(np.float64)


def _set(model: Any, conv: Any, index: int, array: Any, inits: dict[str, Any], consumers: dict[str, list[Any]]) -> None:
    """Write `array` as the Conv's input `index`: in place when only this Conv reads it, else as a new initializer."""
    from onnx import numpy_helper

    name = conv.input[index]
    if len(consumers.get(name, [])) == 1 and name not in {i.name for i in model.graph.input}:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
        return
    new = _unique(f"{name}_folded", inits)
    model.graph.initializer.append(numpy_helper.from_array(array, new))
    inits[new] = model.graph.initializer[-1]
    conv.input[index] = new


def _bypass(model: Any, node: Any, source: str, consumers: dict[str, list[Any]]) -> None:
    """Remove `node` from the data flow: its readers read `source` instead; when its output is a graph output, the
    producer of `source` writes that name instead (source has no other reader)."""
    out = node.output[0]
    if out in {o.name for o in model.graph.output}:
        for producer in model.graph.node:
            producer.output[:] = [out if o == source else o for o in producer.output]
        for reader in consumers.get(source, []):
            reader.input[:] = [out if i == source else i for i in reader.input]
    else:
        for reader in consumers.get(out, []):
            reader.input[:] = [source if i == out else i for i in reader.input]
    stale = {out, source}
    kept = [v for v in model.graph.value_info if v.name not in stale]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate
