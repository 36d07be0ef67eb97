"""The precision of a bare artifact (no manifest beside it), read from the file itself, and the built-in profile whose
gate then applies (used by `edgeconv validate`).

ONNX: QuantizeLinear / DequantizeLinear nodes → int8 (int16 when a zero point is 16-bit), QLinear* / QGemm nodes → int8
in the QOperator format, DynamicQuantizeLinear / MatMulInteger / ConvInteger → dynamic, float16 tensors → fp16.
A QNN context model (EPContext) is read through the compiled graph that ships beside it (`<stem>.int8.onnx`).
TFLite: the types the operators compute in (int16 → int16x8, int8 → int8), else the constants' (float16 → fp16,
int8 weights with float activations → dynamic). OpenVINO IR: FakeQuantize layers → int8, int8 / uint8 / int4 weight
constants without them → w8, float16 constants → fp16. Nothing here runs the model.
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
    try:
        if artifact.format == Format.ONNX:
            return _onnx(artifact.path)
        if artifact.format == Format.QNN_CONTEXT:
            return _qnn_context(artifact.path)
        if artifact.format == Format.TFLITE:
            return _tflite(artifact.path)
        if artifact.format == Format.OPENVINO:
            return _openvino(artifact.path)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError, XML ParseError...: loading it later says what is wrong
        return Inferred(None, f"cannot read its tensors ({first_line(e)})")
    return Inferred(None, f"a {artifact.format.value} artifact's precision is not read from the file")


def profile_for_precision(fmt: Format, inferred: Inferred) -> Any:
    """The built-in profile producing `fmt` at the inferred precision (the one named after the format first:
    onnx-int8-qdq before cpu-int8), or None when there is none."""
    from edgeconv.targets import builtin_profiles

    candidates = [p for p in builtin_profiles() if p.primary_format == fmt and p.quantize.precision == inferred.precision]
    candidates.sort(key=lambda p: (p.quantize.format != inferred.style, p.name != fmt.value,
                                   not p.name.startswith(f"{fmt.value}-"), p.name))
    return candidates[0] if candidates else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _onnx_nodes(graph: Any) -> list[Any]:
    from edgeconv.passes._reads import all_nodes

    return all_nodes(graph)


def _onnx(path: Path) -> Inferred:
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
        return Inferred("int16" if sixteen else "int8", f"{_plural(qlinear, 'QOperator node')} ({kinds})", "qoperator")
    if qdq:
        zp = f" with {'/'.join(sorted(zero_points))} zero points" if zero_points else ""
        return Inferred("int16" if sixteen else "int8", f"{qdq} QuantizeLinear/DequantizeLinear nodes{zp}")
    if dynamic:
        kinds = ", ".join(sorted(op for op in DYNAMIC_OPS if ops[op]))
        return Inferred("dynamic", f"dynamic quantization: {_plural(dynamic, 'node')} ({kinds})")
    fp16 = sum(1 for t in init_types.values() if t == onnx.TensorProto.FLOAT16)
    fp16_values = sum(1 for v in (*graph.input, *graph.output, *graph.value_info)
                      if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16)
    if fp16 or fp16_values:
        what = _plural(fp16, "float16 initializer") if fp16 else _plural(fp16_values, "float16 tensor")
        return Inferred("fp16", f"{what}, no quantization nodes")
    return Inferred("fp32", "no quantization nodes and no float16 tensors")


def _qnn_context(path: Path) -> Inferred:
    """The context binary is opaque; the graph that was compiled into it ships beside it as <stem>.<precision>.onnx."""
    stem = path.stem[:-4] if path.stem.endswith("_ctx") else path.stem
    for compiled in sorted(path.parent.glob(f"{stem}.*.onnx")):
        if compiled.resolve() == path.resolve():
            continue
        found = _onnx(compiled)
        if found.precision is not None:
            return Inferred(found.precision, f"its compiled graph {compiled.name}: {found.reason}")
    return Inferred(None, f"an EPContext model without its compiled graph ({stem}.<precision>.onnx) beside it")


def _tflite(path: Path) -> Inferred:
    from edgeconv.targets.tflite.ops import BOUNDARY_OPS, list_ops, litert_schema

    data = path.read_bytes()
    compute = Counter(t for op in list_ops(data) if op.name not in BOUNDARY_OPS for t in op.activation_types)
    if compute["INT16"]:
        return Inferred("int16x8", f"operators compute on int16 activations ({compute['INT16']} tensors)")
    int8 = compute["INT8"] + compute["UINT8"]
    if int8:
        return Inferred("int8", f"operators compute on int8 activations ({int8} tensors)")
    s = litert_schema()
    ttype = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    model = s.Model.GetRootAs(data, 0)
    constants: Counter = Counter()
    for gi in range(model.SubgraphsLength()):
        graph = model.Subgraphs(gi)
        for ti in range(graph.TensorsLength()):
            t = graph.Tensors(ti)
            buf = t.Buffer()
            if 0 < buf < model.BuffersLength() and (model.Buffers(buf).DataLength() or model.Buffers(buf).Size()):
                constants[ttype.get(t.Type(), str(t.Type()))] += 1
    if constants["FLOAT16"]:
        return Inferred("fp16", f"{_plural(constants['FLOAT16'], 'float16 constant')}, float activations")
    if constants["INT8"] or constants["UINT8"]:
        n = constants["INT8"] + constants["UINT8"]
        return Inferred("dynamic", f"{_plural(n, 'int8 weight tensor')} with float activations")
    return Inferred("fp32", "float32 operators and constants")


def _openvino(path: Path) -> Inferred:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    layers = root.iter("layer")
    kinds: Counter = Counter()
    consts: Counter = Counter()
    for layer in layers:
        kinds[layer.get("type")] += 1
        if layer.get("type") == "Const":
            data = layer.find("data")
            if data is not None:
                consts[data.get("element_type", "")] += 1
    if kinds["FakeQuantize"]:
        return Inferred("int8", f"{_plural(kinds['FakeQuantize'], 'FakeQuantize layer')}")
    low = sum(consts[t] for t in ("i8", "u8", "i4", "u4"))
    if low:
        return Inferred("w8", f"{_plural(low, '8/4-bit integer weight constant')} (weight compression), no FakeQuantize")
    if consts["f16"]:
        return Inferred("fp16", f"{_plural(consts['f16'], 'float16 constant')}")
    return Inferred("fp32", "float32 constants, no FakeQuantize")
