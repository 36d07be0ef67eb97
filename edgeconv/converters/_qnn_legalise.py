"""Rewrite a QDQ model into the data types the Hexagon HTP validates, without changing what it computes beyond one
requantization. Idempotent: a model that is already legal comes back unchanged (and no file is written).

- LayerNormalization: the HTP rejects a signed int8 scale (gamma) next to uint8/uint16 activations ("Failed to add
  node", backendValidateOpConfig 3110); ONNX Runtime's quantizer gives weights int8 symmetric. Each LayerNorm gets a
  fresh gamma DequantizeLinear, requantized to uint8 asymmetric (per tensor) from the dequantized values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LegaliseReport:
    changed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"requantized_uint8": self.changed}


def _requantize_uint8(values: np.ndarray) -> tuple[np.ndarray, np.float32, np.uint8]:
    lo, hi = min(0.0, float(values.min())), max(0.0, float(values.max()))
    scale = np.float32((hi - lo) / 255.0 if hi > lo else 1.0)
    zero = np.uint8(np.clip(round(-lo / float(scale)), 0, 255))
    q = np.clip(np.round(values / scale) + int(zero), 0, 255).astype(np.uint8)
    return q, scale, zero


def legalise_for_htp(src: Path, out: Path) -> tuple[Path, LegaliseReport]:
    """Return (path of the legal model, report): `src` itself when nothing needed changing, else `out`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    report = LegaliseReport()
    nodes = list(graph.node)
    rebuilt = []
    for node in nodes:
        dq = producers.get(node.input[1]) if node.op_type == "LayerNormalization" and len(node.input) > 1 else None
        legal_dq = _uint8_gamma(dq, inits, numpy_helper) if dq is not None else None
        if legal_dq is None:
            rebuilt.append(node)
            continue
        q, scale, zero = legal_dq
        base = f"{node.name or node.output[0]}_gamma_htp_u8"
        graph.initializer.extend([numpy_helper.from_array(q, f"{base}_q"),
                                  numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"),
                                  numpy_helper.from_array(np.array(zero, np.uint8), f"{base}_zp")])
        rebuilt.append(onnx.helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"],
                                             [f"{base}_dq"], name=f"{base}_DequantizeLinear"))
        node.input[1] = f"{base}_dq"  # a fresh DQ per LayerNorm: the old one may be shared
        rebuilt.append(node)
        report.changed.append(node.name or node.output[0])
    if not report.changed:
        return src, report
    used = {i for n in rebuilt for i in n.input} | {o.name for o in graph.output}
    rebuilt = [n for n in rebuilt if n.op_type != "DequantizeLinear" or any(o in used for o in n.output)]
    used = {i for n in rebuilt for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(rebuilt)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save_model(model, str(out))
    return out, report


def _uint8_gamma(dq: Any, inits: dict[str, Any], numpy_helper: Any) -> tuple[np.ndarray, np.float32, np.uint8] | None:
    """(uint8 data, scale, zero point) for a signed int8 constant DequantizeLinear, else None."""
    if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return None
    q = numpy_helper.to_array(inits[dq.input[0]])
    if q.dtype != np.int8:
        return None
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] in inits else 0.0
    if scale.size != 1:  # per-channel: broadcast along the DQ's axis
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = np.asarray(zp).reshape(shape) if np.ndim(zp) else zp
    values = (q.astype(np.float32) - zp) * scale
    return _requantize_uint8(values)
