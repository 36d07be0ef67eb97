"""Reads .tflite files from their flatbuffer (the schema module ai-edge-litert ships; no TensorFlow, no interpreter):
I/O with shape signatures, operators, weights by dtype, and the precision the operators compute in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.errors import InvalidInputError
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.precision import Inferred, plural

if TYPE_CHECKING:
    from edgeconv.inspect import ModelReport


class TfliteReader(ArtifactReader):
    name = "tflite"
    format = Format.TFLITE

    def inspect(self, artifact: Artifact, report: "ModelReport") -> None:
        inspect_tflite(artifact, report)

    def precision(self, artifact: Artifact) -> Inferred:
        return _tflite(artifact.path)


_TFLITE_WIDTH = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8,
                 "bool": 1, "uint16": 2, "uint32": 4, "uint64": 8, "int4": 0.5, "bfloat16": 2}


def inspect_tflite(artifact: Artifact, report: ModelReport) -> None:
    from edgeconv.deps import require

    from edgeconv.targets.tflite.ops import builtin_op_names, operator_name

    s = require("ai_edge_litert.schema_py_generated", "tflite", purpose="reading .tflite files")
    data = artifact.path.read_bytes()
    builtin = builtin_op_names(s)
    ttype = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    try:
        model = s.Model.GetRootAs(data, 0)
        subgraphs = model.SubgraphsLength()
    except Exception as e:  # flatbuffer errors
        raise InvalidInputError(f"cannot read {artifact.path} as TFLite: {e}", "the file is damaged") from e
    counts: Counter = Counter()
    by_dtype: Counter = Counter()
    params = nodes = 0
    for gi in range(subgraphs):
        graph = model.Subgraphs(gi)

        def spec(index: int) -> TensorSpec:
            t = graph.Tensors(index)
            sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
            dims = tuple(int(d) if int(d) > 0 else None for d in (sig if not isinstance(sig, int) else []))
            return TensorSpec((t.Name() or b"").decode(), dims, ttype.get(t.Type(), str(t.Type())))

        if gi == 0:
            report.inputs = [spec(int(i)) for i in graph.InputsAsNumpy()]
            report.outputs = [spec(int(i)) for i in graph.OutputsAsNumpy()]
        for oi in range(graph.OperatorsLength()):
            counts[operator_name(model, graph.Operators(oi), builtin)] += 1
            nodes += 1
        for ti in range(graph.TensorsLength()):
            t = graph.Tensors(ti)
            buf = t.Buffer()
            if buf == 0 or buf >= model.BuffersLength():
                continue
            b = model.Buffers(buf)
            size = b.DataLength() or int(b.Size() or 0)
            if not size:
                continue
            n = 1
            for d in (t.ShapeAsNumpy() if t.ShapeLength() else []):
                n *= int(d)
            params += n
            by_dtype[ttype.get(t.Type(), str(t.Type()))] += size
    report.ops = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    report.nodes = nodes
    report.params = params
    report.bytes_by_dtype = dict(sorted(by_dtype.items(), key=lambda kv: -kv[1]))
    report.quantized = any(k in ("int8", "uint8", "int16") for k in by_dtype)
    report.opsets = {"tflite-schema": int(model.Version())}


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
        return Inferred("fp16", f"{plural(constants['FLOAT16'], 'float16 constant')}, float activations")
    if constants["INT8"] or constants["UINT8"]:
        n = constants["INT8"] + constants["UINT8"]
        return Inferred("dynamic", f"{plural(n, 'int8 weight tensor')} with float activations")
    return Inferred("fp32", "float32 operators and constants")
