"""Which nodes of a float32 ONNX model must stay float32 when the rest goes float16, measured on samples.

float16 holds magnitudes up to 65504 and loses everything below 6.1e-5 (its smallest normal number). Audio front ends
computed in the graph (|STFT|², mel sums, log) and unnormalised accumulations leave that range: converted as they
are, the power spectrum overflows to inf and `log(x + 1e-10)` sees 0. Every node whose float inputs or outputs reach
`max_abs` (default 8192, 8x headroom), and every Log / Reciprocal / Div whose input (the divisor, for Div) holds
values below float16's smallest normal number, is kept in float32; ONNX Runtime's converter puts Casts around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

FP16_TINY = 6.104e-05  # smallest normal float16
DEFAULT_MAX_ABS = 8192.0
UNDERFLOW_OPS = {"Log": (0,), "Reciprocal": (0,), "Div": (1,)}  # op → inputs whose tiny values break it
FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class Island:
    node: str
    op_type: str
    reason: str  # "max |x| 1.6e+05" or "inputs below 6.1e-05"

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "op_type": self.op_type, "reason": self.reason}


def overflow_prone_nodes(model: Any, feeds: Iterable[dict[str, np.ndarray]], max_abs: float = DEFAULT_MAX_ABS) -> list[Island]:
    """The nodes to keep in float32, from the float32 model's own tensors on `feeds`."""
    import onnx

    from edgeconv.quantizers.layer_errors import _session, _with_outputs

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output,
                                                            *inferred.graph.input)}
    initializers = {i.name for i in model.graph.initializer}
    tensors = sorted({t for n in model.graph.node for t in (*n.input, *n.output)
                      if t and t not in initializers and types.get(t) == FLOAT})
    session = _session(_with_outputs(model, tensors))
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    peak: dict[str, float] = {}
    tiny: dict[str, float] = {}
    for feed in feeds:
        values = dict(zip(names, session.run(None, {k: v for k, v in feed.items() if k in wanted})))
        values.update({k: v for k, v in feed.items() if k in wanted})
        for name in tensors:
            array = values.get(name)
            if array is None or array.dtype.kind != "f" or not array.size:
                continue
            magnitude = np.abs(array[np.isfinite(array)])
            if magnitude.size:
                peak[name] = max(peak.get(name, 0.0), float(magnitude.max()))
                nonzero = magnitude[magnitude > 0]
                if nonzero.size:
                    tiny[name] = min(tiny.get(name, np.inf), float(nonzero.min()))
    islands = []
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        big = max((peak.get(t, 0.0) for t in (*node.input, *node.output) if t), default=0.0)
        if big >= max_abs:
            islands.append(Island(name, node.op_type, f"max |x| {big:.3g}"))
            continue
        small = {node.input[k]: tiny.get(node.input[k], np.inf) for k in UNDERFLOW_OPS.get(node.op_type, ())
                 if k < len(node.input)}
        if small and min(small.values()) < FP16_TINY:
            islands.append(Island(name, node.op_type, f"inputs down to {min(small.values()):.3g} (float16 stops at "
                                                      f"{FP16_TINY:.2g})"))
    # the tensor a Log / Div sees must be made in float32 too (log(x + 1e-10): the Add), one node up
    producers = {o: (n.name or f"{n.op_type}_{i}", n.op_type) for i, n in enumerate(model.graph.node) for o in n.output}
    kept = {i.node for i in islands}
    for node in model.graph.node:
        for k in UNDERFLOW_OPS.get(node.op_type, ()):
            tensor = node.input[k] if k < len(node.input) else ""
            producer = producers.get(tensor)
            if producer and producer[0] not in kept and tiny.get(tensor, np.inf) < FP16_TINY:
                islands.append(Island(producer[0], producer[1], f"makes {node.op_type} input values down to "
                                                                 f"{tiny[tensor]:.3g}"))
                kept.add(producer[0])
    return islands


def drop_cast_round_trips(model: Any) -> int:
    """ONNX Runtime's float16 converter casts a blocked node's output to float16 and back to float32 even when the
    next node is blocked too: float32 → float16 → float32 loses what float16 cannot hold (the point of the island).
    Every such pair is bypassed (consumers read the float32 tensor); returns the pairs removed."""
    nodes = list(model.graph.node)
    to16 = {n.output[0]: n.input[0] for n in nodes if n.op_type == "Cast" and _cast_to(n) == 10}
    graph_outputs = {o.name for o in model.graph.output}
    bypass = {n.output[0]: to16[n.input[0]] for n in nodes
              if n.op_type == "Cast" and _cast_to(n) == FLOAT and n.input[0] in to16 and n.output[0] not in graph_outputs}
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in bypass:
                node.input[i] = bypass[name]
    kept = [n for n in nodes if not (n.op_type == "Cast" and n.output[0] in bypass)]
    used = {i for n in kept for i in n.input} | graph_outputs
    kept = [n for n in kept if not (n.op_type == "Cast" and n.output[0] in to16 and n.output[0] not in used)]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(bypass)


def _cast_to(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "to"), -1)


def name_unnamed_nodes(model: Any) -> None:
    """ONNX Runtime's float16 converter blocks nodes by name: give every node one."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{i}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)
