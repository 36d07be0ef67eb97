"""Which op types a static int8 / int16 QDQ model quantizes, on graphs with attention.

ONNX Runtime's default op set puts Q/DQ on every Add, Mul, Div, Softmax, LayerNormalization and Transpose between a
transformer's MatMuls: each is one more rounding of an activation whose range the attention mask or a residual
stream stretches, and ORT runs most of them as float between a DequantizeLinear and a QuantizeLinear anyway. NNCF's
transformer preset quantizes only the compute ops' inputs. On the corpus BERT-tiny at cpu-int8 (32 eval samples) the
compute ops only give 43.0 dB against 34.8 dB, 0.363x against 0.370x fp32 size and 0.70x against 0.87x fp32
latency (bench/bench_quant_peers.py).

So where the graph has attention (a Softmax between MatMuls) and the profile leaves `op_types` to ONNX Runtime's
default, both op sets are quantized from the same cached ranges and the one that measures better on the evaluation
samples (fallback.objective: worst output SNR, plus top-1) is kept. `[quantize.options] attention_op_set` = "measure"
(the default), "default" (ORT's op set, no trial) or "compute" (compute ops only, no trial).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Gather")
CHOICES = ("measure", "default", "compute")
# what may sit between attention's score MatMul and its Softmax (scale, mask, bias) or after the Softmax
_SCORE_PATH = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast", "Reshape", "Transpose", "Dropout", "Identity"})
_MAX_HOPS = 6


def applies(settings: Any, choice: str) -> bool:
    """Only where the op set is ORT's default: a profile that names op types (the QNN "all", TensorRT's placement, a
    user's list) keeps them."""
    return choice != "default" and not (settings.op_types or settings.all_op_types or settings.extra_op_types
                                        or settings.placement)


def has_attention(model_path: Path) -> bool:
    """A Softmax reached from a MatMul through scale / mask ops, whose output feeds a MatMul the same way."""
    import onnx

    graph = onnx.load_model(str(model_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def reaches(start: list[Any], step: Any) -> bool:
        frontier, seen = list(start), set()
        for _ in range(_MAX_HOPS):
            nxt = []
            for node in frontier:
                if node.op_type == "MatMul":
                    return True
                if node.op_type in _SCORE_PATH and id(node) not in seen:
                    seen.add(id(node))
                    nxt += step(node)
            frontier = nxt
        return False

    def up(node: Any) -> list[Any]:
        return [producer[i] for i in node.input if i in producer]

    def down(node: Any) -> list[Any]:
        return [c for o in node.output for c in consumers.get(o, [])]

    return any(n.op_type == "Softmax" and reaches(up(n), up) and reaches(down(n), down) for n in graph.node)


def compute_only(settings: Any) -> Any:
    from dataclasses import replace

    return replace(settings, op_types=COMPUTE_OP_TYPES)
