"""Rewrite a QDQ model into the data types the Hexagon HTP validates, without changing what it computes beyond one
requantization. Idempotent: a model that is already legal comes back unchanged (and no file is written).

- Quantized LayerNormalization: the HTP rejects a signed int8 scale (gamma) next to uint8/uint16 activations ("Failed
  to add node", backendValidateOpConfig 3110); ONNX Runtime's quantizer gives weights int8 symmetric. Each LayerNorm
  gets a fresh gamma DequantizeLinear, requantized to uint8 asymmetric (per tensor) from the dequantized values, and a
  fresh int32 beta with scale = input scale x gamma scale (a beta DQ shared by two LayerNorms, as exporters share
  identical constants, can only match one of them; the HTP refuses the other).
- Any quantized node whose activations mix 8 and 16 bits (the accuracy fallback `int16` widens single tensors) becomes
  16-bit throughout, with Converts at its 8-bit edges (qnn/_widths.py): parts without HTP fp16 refuse mixed nodes.
- MatMul with a 16-bit activation and an int8 weight: the HTP takes (uint16, uint8) only; the weight is requantized to
  uint8 per tensor.
- Float LayerNormalization (its output not quantized: kept in float by the accuracy fallback) whose gamma / beta still
  come from integer DequantizeLinears: the HTP runs it in fp16 and refuses a standalone int32 DQ, so it gets float
  constants of the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LegaliseReport:
    changed: list[str] = field(default_factory=list)  # LayerNorms given a uint8 gamma
    dequantized: list[str] = field(default_factory=list)  # float LayerNorms given float gamma / beta constants
    widened: list[str] = field(default_factory=list)  # nodes whose 8-bit activations were widened to 16 bits
    matmul_weights: list[str] = field(default_factory=list)  # MatMuls (16-bit input) given a uint8 per-tensor weight

    def to_json(self) -> dict[str, Any]:
        return {"requantized_uint8": self.changed, "float_constants": self.dequantized,
                "widened_to_16_bits": self.widened, "matmul_uint8_weights": self.matmul_weights}


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

    from edgeconv.targets.qnn._widths import Graph, make_uniform

    model = onnx.load_model(str(src))
    graph = model.graph
    report = LegaliseReport()
    rebuilt: list[Any] = []
    g = Graph(graph, rebuilt)  # its dicts are kept current as nodes are added
    inits, producers, consumers = g.inits, g.producers, g.consumers
    for node in list(graph.node):
        after: list[Any] = []
        if make_uniform(node, g, after, onnx):
            report.widened.append(node.name or node.output[0])
        if node.op_type == "LayerNormalization" and len(node.input) > 1:
            data = producers.get(node.input[0])
            users = consumers.get(node.output[0], [])
            quantized_out = bool(users) and all(u.op_type == "QuantizeLinear" for u in users)
            if data is not None and data.op_type == "DequantizeLinear" and quantized_out:
                _legal_quantized_layernorm(node, producers, inits, graph, rebuilt, report, onnx, numpy_helper, consumers)
            else:
                _legal_float_layernorm(node, producers, inits, graph, report, numpy_helper)
        elif node.op_type == "MatMul" and len(node.input) == 2:
            _legal_wide_matmul(node, producers, inits, graph, rebuilt, report, onnx, numpy_helper)
        rebuilt.append(node)
        rebuilt.extend(after)
    if not (report.changed or report.dequantized or report.widened or report.matmul_weights):
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


def _dq_values(dq: Any, inits: dict[str, Any], numpy_helper: Any) -> np.ndarray | None:
    """The float values of a DequantizeLinear of constants, else None."""
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] in inits else np.float32(0)
    if scale.size != 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = np.asarray(zp).reshape(shape) if np.ndim(zp) else zp
    return (q - zp) * scale


def _scalar_scale(dq: Any, inits: dict[str, Any], numpy_helper: Any) -> float | None:
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
        return None
    scale = numpy_helper.to_array(inits[dq.input[1]])
    return float(scale.reshape(-1)[0]) if scale.size == 1 else None


def _legal_quantized_layernorm(node: Any, producers: dict[str, Any], inits: dict[str, Any], graph: Any, rebuilt: list[Any],
                               report: LegaliseReport, onnx: Any, numpy_helper: Any, shared: dict[str, list[Any]]) -> None:
    """uint8 gamma, and an int32 beta with scale = input scale x gamma scale (scalar), each in a fresh
    DequantizeLinear: the old ones may be shared with another LayerNorm whose input scale differs."""
    base = node.name or node.output[0]
    gamma_dq = producers.get(node.input[1])
    gamma_scale = _scalar_scale(gamma_dq, inits, numpy_helper)
    changed = False
    legal_gamma = _uint8_gamma(gamma_dq, inits, numpy_helper) if gamma_dq is not None else None
    if legal_gamma is not None:
        q, scale, zero = legal_gamma
        name = f"{base}_gamma_htp_u8"
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_q"),
                                  numpy_helper.from_array(np.array(scale, np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.array(zero, np.uint8), f"{name}_zp")])
        rebuilt.append(onnx.helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"],
                                             [f"{name}_dq"], name=f"{name}_DequantizeLinear"))
        node.input[1] = f"{name}_dq"
        gamma_scale, changed = float(scale), True
    input_scale = _scalar_scale(producers.get(node.input[0]), inits, numpy_helper)
    beta_dq = producers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    beta = _dq_values(beta_dq, inits, numpy_helper)
    beta_scale = np.float32(input_scale * gamma_scale) if input_scale and gamma_scale else None
    already = (beta_dq is not None and (dq_scale := _scalar_scale(beta_dq, inits, numpy_helper)) is not None
               and beta_scale is not None and abs(dq_scale - float(beta_scale)) <= 1e-6 * float(beta_scale)
               and len(shared.get(beta_dq.output[0], [])) <= 1)
    if beta is not None and beta_dq is not None and beta_scale is not None and not already \
            and numpy_helper.to_array(inits[beta_dq.input[0]]).dtype == np.int32:
        info = np.iinfo(np.int32)
        q32 = np.clip(np.round(beta / beta_scale), info.min, info.max).astype(np.int32)
        name = f"{base}_beta_htp_i32"
        graph.initializer.extend([numpy_helper.from_array(q32, f"{name}_q"),
                                  numpy_helper.from_array(np.array(beta_scale, np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.array(0, np.int32), f"{name}_zp")])
        rebuilt.append(onnx.helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"],
                                             [f"{name}_dq"], name=f"{name}_DequantizeLinear"))
        node.input[2] = f"{name}_dq"
        changed = True
    if changed:
        report.changed.append(base)


def _legal_float_layernorm(node: Any, producers: dict[str, Any], inits: dict[str, Any], graph: Any,
                           report: LegaliseReport, numpy_helper: Any) -> None:
    """A LayerNorm computing in float whose gamma / beta come from integer DequantizeLinears: float constants instead."""
    for index in (1, 2):
        if len(node.input) <= index or not node.input[index]:
            continue
        values = _dq_values(producers.get(node.input[index]), inits, numpy_helper)
        if values is None:
            continue
        dtype = np.float16 if _elem_type(graph, node.input[0]) == 10 else np.float32  # 10 = FLOAT16
        name = f"{node.name or node.output[0]}_{'gamma' if index == 1 else 'beta'}_float"
        graph.initializer.append(numpy_helper.from_array(values.astype(dtype), name))
        node.input[index] = name
        if (node.name or node.output[0]) not in report.dequantized:
            report.dequantized.append(node.name or node.output[0])


def _elem_type(graph: Any, tensor: str) -> int:
    """ONNX element type of `tensor` (graph input / value_info / inferred), 1 (float) when unknown."""
    import onnx

    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.name == tensor:
            return vi.type.tensor_type.elem_type
    try:
        inferred = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph)).graph
    except Exception:  # noqa: BLE001 - best effort: float32 is the common case
        return 1
    return next((vi.type.tensor_type.elem_type for vi in inferred.value_info if vi.name == tensor), 1)


def _legal_wide_matmul(node: Any, producers: dict[str, Any], inits: dict[str, Any], graph: Any, rebuilt: list[Any],
                       report: LegaliseReport, onnx: Any, numpy_helper: Any) -> None:
    """MatMul with a 16-bit activation and an int8 constant weight (per channel or not): the HTP takes (uint16, uint8)
    only, so the weight gets a fresh uint8 per-tensor DequantizeLinear (as ORT's get_qnn_qdq_config does)."""
    act, weight = producers.get(node.input[0]), producers.get(node.input[1])
    if act is None or act.op_type != "DequantizeLinear" or len(act.input) < 3 or act.input[2] not in inits:
        return
    if numpy_helper.to_array(inits[act.input[2]]).dtype not in (np.uint16, np.int16):
        return
    if weight is None or weight.input[0] not in inits or numpy_helper.to_array(inits[weight.input[0]]).dtype != np.int8:
        return
    values = _dq_values(weight, inits, numpy_helper)
    if values is None:
        return
    q, scale, zero = _requantize_uint8(values)
    base = f"{node.name or node.output[0]}_weight_htp_u8"
    graph.initializer.extend([numpy_helper.from_array(q, f"{base}_q"),
                              numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"),
                              numpy_helper.from_array(np.array(zero, np.uint8), f"{base}_zp")])
    rebuilt.append(onnx.helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"], [f"{base}_dq"],
                                         name=f"{base}_DequantizeLinear"))
    node.input[1] = f"{base}_dq"
    report.matmul_weights.append(node.name or node.output[0])
