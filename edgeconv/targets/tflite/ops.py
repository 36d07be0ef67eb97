"""What is inside a .tflite: its operators and the types they compute in, read from the flatbuffer with the schema
module that ai-edge-litert ships (no TensorFlow import, no interpreter). Public: the TFLite edges' op check, and
`edgeconv inspect` / precision inference outside the family, read .tflite files through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeconv.deps import require

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")  # float I/O converters at the model's edges, fp16 weight decompression


@dataclass(frozen=True)
class OpInfo:
    index: int
    subgraph: int
    name: str  # BUILTIN name (e.g. CONV_2D) or CUSTOM:<code>
    activation_types: tuple[str, ...]  # types of non-constant inputs, then outputs

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "subgraph": self.subgraph, "op": self.name, "types": list(self.activation_types)}


def litert_schema() -> Any:
    """ai-edge-litert's generated flatbuffer schema module (schema_py_generated)."""
    return require("ai_edge_litert.schema_py_generated", "tflite", purpose="reading .tflite files")


def builtin_op_names(schema: Any) -> dict[int, str]:
    """BuiltinOperator number → name (CONV_2D ...)."""
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def operator_name(model: Any, op: Any, builtin: dict[int, str]) -> str:
    """An operator's BUILTIN name, or CUSTOM:<code> for custom and Flex ops."""
    code = model.OperatorCodes(op.OpcodeIndex())
    number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = builtin.get(number, str(number))
    if name == "CUSTOM":
        name = "CUSTOM:" + (code.CustomCode() or b"").decode(errors="replace")
    return name


def list_ops(model_bytes: bytes) -> list[OpInfo]:
    s = litert_schema()
    builtin = builtin_op_names(s)
    ttype = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    model = s.Model.GetRootAs(model_bytes, 0)
    ops = []
    for gi in range(model.SubgraphsLength()):
        graph = model.Subgraphs(gi)

        def constant(t: Any) -> bool:
            if t.Buffer() == 0:
                return False
            buf = model.Buffers(t.Buffer())
            return buf.DataLength() > 0 or buf.Size() > 0

        for oi in range(graph.OperatorsLength()):
            op = graph.Operators(oi)
            name = operator_name(model, op, builtin)
            ins = [graph.Tensors(op.Inputs(i)) for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
            outs = [graph.Tensors(op.Outputs(i)) for i in range(op.OutputsLength()) if op.Outputs(i) >= 0]
            types = [ttype.get(t.Type(), str(t.Type())) for t in ins if not constant(t)]
            types += [ttype.get(t.Type(), str(t.Type())) for t in outs]
            ops.append(OpInfo(oi, gi, name, tuple(types)))
    return ops


def op_names(model_bytes: bytes) -> dict[str, int]:
    """{op name: count}, sorted by name."""
    counts: dict[str, int] = {}
    for op in list_ops(model_bytes):
        counts[op.name] = counts.get(op.name, 0) + 1
    return dict(sorted(counts.items()))


def float_ops(model_bytes: bytes) -> list[OpInfo]:
    """Ops that compute in floating point (any non-constant input or output is float), QUANTIZE/DEQUANTIZE excepted."""
    return [op for op in list_ops(model_bytes)
            if op.name not in BOUNDARY_OPS and any(t in FLOAT_TYPES for t in op.activation_types)]


def custom_ops(model_bytes: bytes) -> list[str]:
    """Flex (select TF) and custom ops, which stock LiteRT builds cannot run."""
    return sorted({op.name for op in list_ops(model_bytes) if op.name.startswith("CUSTOM:")})
