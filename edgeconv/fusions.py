"""Operator fusions a profile asks for (`[normalise] fuse = [...]`), done by ONNX Runtime's own fusion passes: the ones
its QNN preprocessing (`onnxruntime.quantization.execution_providers.qnn.qnn_preprocess_model`) applies.

- `gelu`: the Erf decomposition of GELU that exporters write below opset 20 (PyTorch at opset 17, Hugging Face
  exports: x * 0.5 * (1 + Erf(x / sqrt(2))) in any operand order, or with x * 0.7071) → one Gelu node. ORT's
  FusionGelu writes a com.microsoft Gelu; at opset >= 20 edgeconv moves it to the ONNX domain (`Gelu`,
  approximate = "none": the same function, a standard op, what PyTorch itself exports at opset 20+). The Hexagon HTP
  refuses Erf inside a quantized graph; it takes Gelu.
- `layernorm`: ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div → Mul → Add (LayerNorm exported below opset 17)
  → one LayerNormalization (needs opset >= 17).

Why not qnn_preprocess_model itself: it first runs ONNX Runtime's basic graph optimiser over the whole model, which at
opset >= 20 already rewrites the GELU (and Reshape / Transpose chains elsewhere) but does not count that as a change:
its own fusions then find nothing, it returns False and writes no file. The fusion classes are its real work.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgeconv.targets.schema import FUSIONS

ONNX_GELU_OPSET = 20
LAYERNORM_OPSET = 17
_WHAT = {"gelu": ("Erf-GELU", "Gelu"), "layernorm": ("ReduceMean-LayerNorm", "LayerNormalization")}


@dataclass
class FusionReport:
    fused: dict[str, int] = field(default_factory=dict)  # fusion name → subgraphs replaced
    notes: list[str] = field(default_factory=list)


def _opset(model: Any) -> int:
    return next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)


def apply_fusions(model: Any, names: tuple[str, ...]) -> FusionReport:
    """Fuse in place (`model` is an onnx.ModelProto); report how many subgraphs each fusion replaced."""
    from onnxruntime.quantization.fusions import FusionGelu, FusionLayerNormalization
    from onnxruntime.quantization.onnx_model import ONNXModel

    assert all(n in FUSIONS for n in names), names  # the profile schema checks them
    report = FusionReport()
    if not names:
        return report
    wrapped = ONNXModel(model)
    opset = _opset(model)
    had_contrib = any(i.domain == "com.microsoft" for i in model.opset_import)
    for name in names:
        if name == "layernorm" and opset < LAYERNORM_OPSET:
            report.notes.append(f"layernorm fusion skipped: opset {opset} < {LAYERNORM_OPSET}")
            continue
        fusion_cls = FusionGelu if name == "gelu" else FusionLayerNormalization
        before = Counter(n.op_type for n in model.graph.node)
        fusion_cls(wrapped).apply()
        target = _WHAT[name][1]
        count = Counter(n.op_type for n in model.graph.node)[target] - before[target]
        if count:
            report.fused[name] = count
            report.notes.append(f"fused {count} {_WHAT[name][0]} into {target} (onnxruntime {fusion_cls.__name__})")
    if report.fused:
        wrapped.topological_sort()
    if report.fused.get("gelu") and opset >= ONNX_GELU_OPSET:
        for node in model.graph.node:
            if node.op_type == "Gelu" and node.domain == "com.microsoft":
                node.domain = ""  # ONNX Gelu (opset 20) with its default approximate = "none" is the same function
        if not had_contrib and not any(n.domain == "com.microsoft" for n in model.graph.node):
            kept = [i for i in model.opset_import if i.domain != "com.microsoft"]
            del model.opset_import[:]
            model.opset_import.extend(kept)
    return report
