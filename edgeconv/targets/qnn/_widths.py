"""One activation width per quantized node, for the Hexagon HTP (a step of _qnn_legalise.legalise_for_htp).

The accuracy fallback `int16` gives one tensor 16-bit activations: its producer then writes 16 bits from 8-bit inputs,
and its consumers read it beside 8-bit inputs or write 8 bits. The HTP of parts without fp16 (7 Gen 3, HTP v73)
refuses every such node ("Failed to add node.", measured for Add, Sub, Mul, Div, Pow, Sqrt, Tanh, Exp, ReduceMean,
Conv, Gemm, MatMul, LayerNormalization); an 8 Gen 3 takes them. ONNX Runtime's QNN config does the same fix at
quantization time (get_qnn_qdq_config's `add_qtype_converts`), but leaves constant inputs alone (a Pow's exponent stays
8-bit: still refused). Here, a node whose activations mix 8 and 16 bits becomes 16-bit throughout:

- an 8-bit activation input gets a Convert (DQ → Q16 → DQ16, the same range: scale / 257, zero point × 257 for uint8;
  / 256, × 256 for int8), an 8-bit constant input is rewritten exactly in 16 bits (q × 257);
- an 8-bit output is written in 16 bits and converted back (node → Q16 → DQ16 → the original Q8).

Values stay on the same grid, so the graph computes what the fallback measured on the CPU (up to one double rounding).
Weight inputs (a Conv / Gemm / MatMul weight, a LayerNorm's gamma / beta) keep their type: a16w8 is what the HTP
takes. Idempotent: a node already at one width is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeconv.onnx_graph import consumers, initializers, producers

WIDER = {np.dtype(np.uint8): (np.uint16, 257), np.dtype(np.int8): (np.int16, 256)}
WIDE = frozenset({np.dtype(np.uint16), np.dtype(np.int16)})
WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "LayerNormalization": (1, 2),
                 "InstanceNormalization": (1, 2), "BatchNormalization": (1, 2, 3, 4), "GroupNormalization": (1, 2)}
BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}  # int32, scale = input scale x weight scale
QDQ = ("QuantizeLinear", "DequantizeLinear")


class Graph:
    """The model being rewritten: initializers, producers and consumers kept current as nodes are added."""

    def __init__(self, graph: Any, rebuilt: list[Any]):
        from onnx import numpy_helper

        self.graph, self.rebuilt, self.numpy_helper = graph, rebuilt, numpy_helper
        self.inits = initializers(graph)
        self.producers = producers(graph)
        self.consumers = consumers(graph)
        self.outputs = {o.name for o in graph.output}

    def array(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        return None if init is None else self.numpy_helper.to_array(init)

    def add_init(self, array: np.ndarray, name: str) -> str:
        self.graph.initializer.append(self.numpy_helper.from_array(array, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def add_node(self, node: Any, into: list[Any]) -> None:
        into.append(node)
        for o in node.output:
            self.producers[o] = node
        for i in node.input:
            self.consumers.setdefault(i, []).append(node)

    def zero_point_dtype(self, qdq: Any) -> np.dtype | None:
        zp = self.array(qdq.input[2]) if len(qdq.input) > 2 else None
        return None if zp is None else zp.dtype


def _activation_inputs(node: Any, g: Graph) -> list[tuple[int, Any, np.dtype]]:
    """(index, DequantizeLinear, 8/16-bit type) of each quantized input that is not a weight."""
    out = []
    for index, name in enumerate(node.input):
        dq = g.producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        if index in WEIGHT_INPUTS.get(node.op_type, ()) and dq.input[0] in g.inits:
            continue
        dtype = g.zero_point_dtype(dq)
        if dtype is not None and (dtype in WIDER or dtype in WIDE):
            out.append((index, dq, dtype))
    return out


def _quantized_outputs(node: Any, g: Graph) -> list[tuple[int, Any, np.dtype]]:
    """(index, QuantizeLinear, type) of each output read only by QuantizeLinears of one 8/16-bit type."""
    out = []
    for index, name in enumerate(node.output):
        users = g.consumers.get(name, [])
        if not name or name in g.outputs or not users or any(u.op_type != "QuantizeLinear" for u in users):
            continue
        types = {g.zero_point_dtype(u) for u in users}
        dtype = next(iter(types)) if len(types) == 1 else None
        if dtype is not None and (dtype in WIDER or dtype in WIDE):
            out.append((index, users[0], dtype))
    return out


def make_uniform(node: Any, g: Graph, after: list[Any], onnx: Any) -> bool:
    """Widen the 8-bit activations of `node` when others are 16-bit (Converts go into g.rebuilt before it and into
    `after`); True when something changed."""
    if node.op_type in QDQ:
        return False
    inputs, outputs = _activation_inputs(node, g), _quantized_outputs(node, g)
    types = {t for _, _, t in (*inputs, *outputs)}
    if not outputs or not (types & WIDE) or not (types - WIDE):
        return False
    base = node.name or node.output[0]
    for index, dq, dtype in inputs:
        if dtype in WIDER:
            node.input[index] = _widen_input(dq, dtype, f"{base}_in{index}_htp16", g, onnx)
            if index == 0 and node.op_type in BIAS_INPUT:
                _rescale_bias(node, WIDER[dtype][1], f"{base}_bias_htp16", g, onnx)
    for index, q, dtype in outputs:
        if dtype in WIDER:
            _widen_output(node, index, q, dtype, f"{base}_out{index}_htp16", g, after, onnx)
    return True


def _wide_params(qdq: Any, dtype: np.dtype, g: Graph) -> tuple[np.ndarray, np.ndarray, int]:
    wide, factor = WIDER[dtype]
    scale = g.array(qdq.input[1])
    zero = g.array(qdq.input[2])
    assert scale is not None and zero is not None  # zero_point_dtype found it
    return (scale.astype(np.float32) / np.float32(factor)), (zero.astype(np.int64) * factor).astype(wide), factor


def _widen_input(dq: Any, dtype: np.dtype, base: str, g: Graph, onnx: Any) -> str:
    """A 16-bit twin of the 8-bit DequantizeLinear `dq`: exact for a constant, a Convert for an activation."""
    scale, zero, factor = _wide_params(dq, dtype, g)
    axis = [a for a in dq.attribute if a.name == "axis"]
    g.add_init(scale, f"{base}_scale")
    g.add_init(zero, f"{base}_zp")
    constant = g.array(dq.input[0]) if dq.input[0] in g.inits else None
    if constant is not None:
        g.add_init((constant.astype(np.int64) * factor).astype(zero.dtype), f"{base}_q")
    else:
        quantize = onnx.helper.make_node("QuantizeLinear", [dq.output[0], f"{base}_scale", f"{base}_zp"], [f"{base}_q"],
                                         name=f"{base}_QuantizeLinear")
        quantize.attribute.extend(axis)
        g.add_node(quantize, g.rebuilt)
    dequantize = onnx.helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"], [f"{base}_dq"],
                                       name=f"{base}_DequantizeLinear")
    dequantize.attribute.extend(axis)
    g.add_node(dequantize, g.rebuilt)
    return f"{base}_dq"


def _rescale_bias(node: Any, factor: int, base: str, g: Graph, onnx: Any) -> None:
    """The int32 bias of a Conv / Gemm whose input scale was divided by `factor`: the same values at scale / factor
    (q x factor, exact), so its scale stays input scale x weight scale as the HTP expects."""
    index = BIAS_INPUT[node.op_type]
    dq = g.producers.get(node.input[index]) if len(node.input) > index else None
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in g.inits:
        return
    q, scale = g.array(dq.input[0]), g.array(dq.input[1])
    if q is None or scale is None or q.dtype != np.int32:
        return
    info = np.iinfo(np.int32)
    g.add_init(np.clip(q.astype(np.int64) * factor, info.min, info.max).astype(np.int32), f"{base}_q")
    g.add_init((scale.astype(np.float32) / np.float32(factor)), f"{base}_scale")
    inputs = [f"{base}_q", f"{base}_scale"]
    zero = g.array(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    if zero is not None:
        inputs.append(g.add_init(zero, f"{base}_zp"))
    dequantize = onnx.helper.make_node("DequantizeLinear", inputs, [f"{base}_dq"], name=f"{base}_DequantizeLinear")
    dequantize.attribute.extend(a for a in dq.attribute if a.name == "axis")
    g.add_node(dequantize, g.rebuilt)
    node.input[index] = f"{base}_dq"


def _widen_output(node: Any, index: int, q: Any, dtype: np.dtype, base: str, g: Graph, after: list[Any],
                  onnx: Any) -> None:
    """node writes `base` in 16 bits; Q16 → DQ16 gives back the original tensor for its 8-bit QuantizeLinear(s)."""
    scale, zero, _ = _wide_params(q, dtype, g)
    tensor = node.output[index]
    g.add_init(scale, f"{base}_scale")
    g.add_init(zero, f"{base}_zp")
    node.output[index] = f"{base}_float"
    g.producers[f"{base}_float"] = node
    g.add_node(onnx.helper.make_node("QuantizeLinear", [f"{base}_float", f"{base}_scale", f"{base}_zp"], [f"{base}_q"],
                                     name=f"{base}_QuantizeLinear"), after)
    g.add_node(onnx.helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"], [tensor],
                                     name=f"{base}_DequantizeLinear"), after)
