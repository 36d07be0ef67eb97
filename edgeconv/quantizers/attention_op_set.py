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

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeconv.context import StepContext
    from edgeconv.quantizers.calibration import SampleSet
    from edgeconv.quantizers.onnx_qdq import StaticSettings

COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Gather")
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


@dataclass(frozen=True)
class AttentionOpSet:
    """The op set kept on an attention graph, and what each candidate measured."""

    chosen: str  # "default" | "compute"
    settings: StaticSettings
    path: Path  # the QDQ model quantized with that op set
    measured: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "op_types": list(self.settings.op_types) or "onnxruntime default",
                "measured": self.measured}


def choose(float_path: Path, qdq: Path, samples: SampleSet, settings: StaticSettings, excluded: list[str],
           cache: Path, ctx: StepContext) -> AttentionOpSet | None:
    """On a graph with attention, `qdq` (ORT's default op set) or the compute ops only, quantized from the same cached
    ranges and judged in the profile's own format (or as `attention_op_set` says); None where it does not apply."""
    from edgeconv.quantizers import fallback
    from edgeconv.quantizers.onnx_qdq import quantize_file
    from edgeconv.quantizers.target_scoring import session_factory

    choice = str(ctx.profile.quantize.options.get("attention_op_set", "measure"))
    if not applies(settings, choice) or not has_attention(float_path):
        return None
    compute = compute_only(settings)
    alt = qdq.with_name(qdq.name.replace(".qdq.onnx", ".compute.qdq.onnx"))
    quantize_file(float_path, alt, samples, compute, nodes_to_exclude=excluded, cache_path=cache, quant_format="qdq")
    if choice == "compute":
        return AttentionOpSet("compute", compute, alt, {})
    with ctx.reporter.task("attention graph: measuring the op set to quantize", total=None):
        candidates = {"default": (settings, qdq), "compute": (compute, alt)}
        if settings.format != "qdq":  # judged in the profile's own format, as the accuracy search's trials are
            for name, (cand, path) in list(candidates.items()):
                judged = path.with_name(path.name.replace(".qdq.onnx", f".{settings.format}.onnx"))
                quantize_file(float_path, judged, samples, cand, nodes_to_exclude=excluded, cache_path=cache,
                              quant_format=settings.format)
                candidates[name] = (cand, judged)
        evaluator = fallback.Evaluator(float_path, fallback.evaluation_feeds(ctx), session_factory(ctx))
        measured = {name: evaluator.evaluate(path) for name, (_, path) in candidates.items()}
    scores = {name: fallback.objective(ev) for name, ev in measured.items()}
    chosen = "compute" if scores["compute"] > scores["default"] else "default"
    report = {name: {"snr_db": round(float(ev.metrics.snr_db), 2), "objective": round(scores[name], 2)}
              for name, ev in measured.items()}
    if chosen == "compute":
        ctx.warn(f"attention graph: quantized the compute ops only ({', '.join(COMPUTE_OP_TYPES)}): "
                 f"{report['compute']['snr_db']:.1f} dB against {report['default']['snr_db']:.1f} dB with ONNX "
                 "Runtime's default op set; notes.quantize.attention_op_set")
    kept_settings, kept_path = (compute, alt) if chosen == "compute" else (settings, qdq)  # QDQ: the search's start
    return AttentionOpSet(chosen, kept_settings, kept_path, report)
