"""Rewrite a QDQ model into the data types the Hexagon HTP validates, without changing what it computes beyond one
requantization. Idempotent: a model that is already legal comes back unchanged (and no file is written).

- LayerNormalization: the HTP rejects a signed int8 scale (gamma) next to uint8/uint16 activations ("Failed to add
  node", backendValidateOpConfig 3110); ONNX Runtime's quantizer gives weights int8 symmetric. The gamma's
  DequantizeLinear is requantized to uint8 asymmetric from its dequantized values.
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
    consumers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    report = LegaliseReport()
    for node in graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or consumers.get(dq.output[0], 0) != 1:
            continue
        if dq.input[0] not in inits or dq.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        if q.dtype != np.int8:
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else 0.0
        if scale.size != 1:  # per-channel gamma: leave it (not seen from ORT's quantizer)
            continue
        values = (q.astype(np.float32) - zp) * scale
        new_q, new_scale, new_zero = _requantize_uint8(values)
        base = f"{dq.name or dq.output[0]}_htp_u8"
        for tensor in (numpy_helper.from_array(new_q, f"{base}_q"),
                       numpy_helper.from_array(np.array(new_scale, np.float32).reshape(inits[dq.input[1]].dims), f"{base}_scale"),
                       numpy_helper.from_array(np.array(new_zero, np.uint8).reshape(inits[dq.input[1]].dims), f"{base}_zp")):
            graph.initializer.append(tensor)
        del dq.input[:]
        dq.input.extend([f"{base}_q", f"{base}_scale", f"{base}_zp"])
        for attr in list(dq.attribute):
            if attr.name == "axis":
                dq.attribute.remove(attr)
        report.changed.append(node.name or node.output[0])
    if not report.changed:
        return src, report
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used or i.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save_model(model, str(out))
    return out, report
