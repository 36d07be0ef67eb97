"""The precision of a bare artifact (no manifest beside it), read from the file itself, and the built-in profile whose
gate then applies (used by `edgeconv validate`). Each format's rule is its reader's (targets/<family>/reader.py):

ONNX (here, shared by the formats that wrap ONNX): QuantizeLinear / DequantizeLinear nodes → int8 (int16 when most
activations are 16-bit), QLinear* / QGemm nodes → int8 in the QOperator format, DynamicQuantizeLinear / MatMulInteger /
ConvInteger → dynamic, MatMulNBits → int4, float16 tensors → fp16. A QNN context model is read through the compiled graph beside it
(qnn/reader.py), a .tflite from the types its operators compute in (tflite/reader.py), an OpenVINO IR from its
FakeQuantize layers and weight constants (openvino/reader.py). Nothing here runs the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeconv.errors import first_line
from edgeconv.formats import Artifact, Format

QLINEAR_OPS = ("QGemm", "QAttention", "QEmbedLayerNormalization")  # QOperator ops not named QLinear*
DYNAMIC_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")


@dataclass(frozen=True)
class Inferred:
    precision: str | None  # None: the file does not say (then the format's float profile applies)
    reason: str  # one line: what in the file says so
    style: str = "qdq"  # qdq | qoperator (ONNX QLinear* nodes): picks cpu-int8-qop over onnx-int8-qdq

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "reason": self.reason}


def infer_precision(artifact: Artifact) -> Inferred:
    from edgeconv.artifact_readers import reader_for

    reader = reader_for(artifact.format)  # its family's reader.py
    try:
        found = reader.precision(artifact) if reader is not None else None
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError, XML ParseError...: loading it later says what is wrong
        return Inferred(None, f"cannot read its tensors ({first_line(e)})")
    if found is not None:
        return found
    return Inferred(None, f"a {artifact.format.value} artifact's precision is not read from the file")


def profile_for_precision(fmt: Format, inferred: Inferred) -> Any:
    """The built-in profile producing `fmt` at the inferred precision (the one named after the format first:
    onnx-int8-qdq before cpu-int8), or None when there is none."""
    from edgeconv.targets import builtin_profiles

    candidates = [p for p in builtin_profiles() if p.primary_format == fmt and p.quantize.precision == inferred.precision]
    candidates.sort(key=lambda p: (p.quantize.format != inferred.style, p.name != fmt.value,
                                   not p.name.startswith(f"{fmt.value}-"), p.name))
    return candidates[0] if candidates else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _onnx_nodes(graph: Any) -> list[Any]:
    from edgeconv.onnx_graph import all_nodes

    return all_nodes(graph)


def onnx_precision(path: Path) -> Inferred:
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    graph = model.graph
    nodes = _onnx_nodes(graph)
    ops = Counter(n.op_type for n in nodes)
    init_types = {i.name: i.data_type for i in graph.initializer}
    for node in nodes:  # Constant nodes hold zero points too
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    init_types[node.output[0]] = attr.t.data_type
    name = onnx.TensorProto.DataType.Name
    qlinear = sum(c for op, c in ops.items() if op.startswith("QLinear") or op in QLINEAR_OPS)
    qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    zero_points = {name(init_types[n.input[2]]).lower() for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and len(n.input) > 2 and n.input[2] in init_types} - {"int32"}  # int32: biases
    # int16 when most activations are 16-bit: hexagon-int8's accuracy fallback widens a few tensors to 16 bit, and such
    # an int8 model must keep int8's gate (the activations' QuantizeLinear nodes are counted, weights have no Q)
    act_types = [name(init_types[n.input[2]]).lower() for n in nodes if n.op_type == "QuantizeLinear"
                 and len(n.input) > 2 and n.input[2] in init_types]
    wide = sum(1 for t in act_types if t in ("int16", "uint16"))
    sixteen = wide * 2 > len(act_types) if act_types else any(z in ("int16", "uint16") for z in zero_points)
    dynamic = sum(ops[op] for op in DYNAMIC_OPS)
    if qlinear:
        kinds = ", ".join(sorted({op for op in ops if op.startswith("QLinear") or op in QLINEAR_OPS}))
        return Inferred("int16" if sixteen else "int8", f"{plural(qlinear, 'QOperator node')} ({kinds})", "qoperator")
    if qdq:
        zp = f" with {'/'.join(sorted(zero_points))} zero points" if zero_points else ""
        return Inferred("int16" if sixteen else "int8", f"{qdq} QuantizeLinear/DequantizeLinear nodes{zp}")
    if ops["MatMulNBits"]:
        return Inferred("int4", f"{plural(ops['MatMulNBits'], 'MatMulNBits node')} (block-wise 4-bit weights)")
    if dynamic:
        kinds = ", ".join(sorted(op for op in DYNAMIC_OPS if ops[op]))
        return Inferred("dynamic", f"dynamic quantization: {plural(dynamic, 'node')} ({kinds})")
    fp16 = sum(1 for t in init_types.values() if t == onnx.TensorProto.FLOAT16)
    fp16_values = sum(1 for v in (*graph.input, *graph.output, *graph.value_info)
                      if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16)
    if fp16 or fp16_values:
        what = plural(fp16, "float16 initializer") if fp16 else plural(fp16_values, "float16 tensor")
        return Inferred("fp16", f"{what}, no quantization nodes")
    return Inferred("fp32", "no quantization nodes and no float16 tensors")
