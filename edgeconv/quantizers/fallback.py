"""Accuracy-driven mixed precision: when the quantized model misses the profile's gate, keep the nodes that cost the
most accuracy in higher precision until the gate passes or the budget (`--max-fallback` / quantize.max_fallback) is
spent.

1. Evaluate the all-integer model against the float ONNX on the validation samples (the gate's own metrics).
2. Rank the quantized nodes by the error each adds (per-layer comparison, layer_errors.py).
3. Measure the top candidates one by one (re-quantizing from the cached calibration ranges: no re-calibration) and
   order them by the accuracy each one buys back.
4. Add them greedily, keeping a node only if it helps, until the gate passes or the budget is hit.
The manifest gets every kept node with its op type, its layer SNR and what it bought (dB of output SNR, top-1).

Fallback precision (quantize.fallback): "fp32" / "fp16" keep the node out of quantization (float in the ONNX; an fp16
target's compiler runs it in fp16); "int16" keeps it quantized with 16-bit activations (HTP-style W8A16).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeconv.quantizers.layer_errors import DQ_SUFFIX, layer_errors

WIDE = {"uint8": "QUInt16", "int8": "QInt16", "uint16": "QUInt16", "int16": "QInt16"}
MIN_GAIN = 0.05  # objective units a node must buy back to be kept


@dataclass
class FallbackNode:
    node: str
    op_type: str
    layer_snr_db: float | None
    layer_cost_db: float | None
    gain_alone: float  # objective gained when only this node falls back
    gain: float = 0.0  # objective gained when added to the ones before it
    snr_db_after: float | None = None
    top1_after: float | None = None


@dataclass
class FallbackResult:
    precision: str
    budget: int
    gate_passed_before: bool
    gate_passed_after: bool
    before: dict[str, Any]
    after: dict[str, Any]
    failures_after: tuple[str, ...] = ()
    nodes: list[FallbackNode] = field(default_factory=list)
    candidates_measured: int = 0
    seconds: float = 0.0
    final_path: Path | None = None

    def node_names(self) -> list[str]:
        return [n.node for n in self.nodes]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("final_path")
        return out


def objective(metrics: Any) -> float:
    """One number to climb: worst output SNR (dB) plus 50 per unit of top-1 agreement where outputs are class scores."""
    value = float(metrics.snr_db)
    if metrics.top1_agreement is not None:
        value += 50.0 * float(metrics.top1_agreement)
    return value


def apply(float_path: Path, nodes: list[str], precision: str, activations: str) -> tuple[list[str], dict[str, Any] | None]:
    """(nodes to exclude from quantization, TensorQuantOverrides) that keep `nodes` at `precision`."""
    if not nodes:
        return [], None
    if precision != "int16":
        return list(nodes), None
    import onnx
    from onnxruntime.quantization import QuantType

    model = onnx.load_model(str(float_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    wide = getattr(QuantType, WIDE[activations])
    overrides: dict[str, Any] = {}
    wanted = set(nodes)
    for node in model.graph.node:
        if node.name in wanted:
            for tensor in [*node.input, *node.output]:
                if tensor and tensor not in inits:
                    overrides[tensor] = [{"quant_type": wide}]
    return [], overrides


class Evaluator:
    """Float ONNX outputs on fixed samples, computed once; quantized candidates compared against them."""

    def __init__(self, float_path: Path, feeds: list[dict[str, np.ndarray]]):
        from edgeconv.runtimes.ort import cpu_session

        self.feeds = feeds
        session = cpu_session(str(float_path))
        self.names = [o.name for o in session.get_outputs()]
        self.references = [session.run(None, self._feed(session, f)) for f in feeds]

    @staticmethod
    def _feed(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = {i.name for i in session.get_inputs()}
        return {k: v for k, v in feeds.items() if k in wanted}

    def __call__(self, quant_path: Path) -> Any:
        from edgeconv.runtimes.ort import cpu_session
        from edgeconv.validation import compare

        session = cpu_session(str(quant_path))
        actuals = [session.run(None, self._feed(session, f)) for f in self.feeds]
        return compare(self.names, self.references, actuals)


def evaluation_feeds(ctx: Any) -> list[dict[str, np.ndarray]]:
    """The samples the validate stage will use (same folder, count and seed), materialised (a few dozen at most)."""
    from edgeconv.quantizers.calibration import RANDOM, open_samples, preprocess_spec

    options = ctx.options
    spec = options.eval or (options.calib if options.calib != RANDOM else None)
    samples = open_samples(spec, ctx.source.inputs, ctx.profile.validate.samples, seed=options.seed + 1,
                           purpose="validation", preprocess=preprocess_spec(ctx))
    return list(samples)


def quantized_nodes(quant_path: Path) -> list[str]:
    """Compute nodes that consume a dequantized tensor (i.e. run on integer data in a QDQ model)."""
    import onnx

    model = onnx.load_model(str(quant_path), load_external_data=False)
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dq_out for i in n.input)]


def _metrics_json(metrics: Any) -> dict[str, Any]:
    return {"snr_db": round(metrics.snr_db, 2), "cosine": metrics.cosine, "top1_agreement": metrics.top1_agreement,
            "max_abs": metrics.max_abs}


def search(float_path: Path, qdq_path: Path, requantize: Callable[[list[str], Path], Path], feeds: list[dict[str, Any]],
           gate: Any, budget: int, work_dir: Path, precision: str, max_candidates: int | None = None) -> FallbackResult:
    from edgeconv.validation import check_gate

    started = time.perf_counter()
    evaluate = Evaluator(float_path, feeds)
    base = evaluate(qdq_path)
    base_gate = check_gate(base, gate)
    result = FallbackResult(precision, budget, base_gate.passed, base_gate.passed, _metrics_json(base),
                            _metrics_json(base), base_gate.failures, final_path=qdq_path)
    if base_gate.passed or budget <= 0:
        result.seconds = round(time.perf_counter() - started, 2)
        return result
    rows = {r.node: r for r in layer_errors(float_path, qdq_path, feeds[:8])}
    candidates = quantized_nodes(qdq_path)
    candidates.sort(key=lambda n: -(rows[n].cost_db if n in rows else 0.0))
    limit = max_candidates or max(6, 2 * budget)
    measured: list[FallbackNode] = []
    base_obj = objective(base)
    for i, node in enumerate(candidates[:limit]):
        path = requantize([node], work_dir / f"fallback.try{i}.onnx")
        m = evaluate(path)
        row = rows.get(node)
        measured.append(FallbackNode(node, row.op_type if row else "", _finite(row.snr_db if row else None),
                                     _finite(row.cost_db if row else None), round(objective(m) - base_obj, 3)))
    result.candidates_measured = len(measured)
    measured.sort(key=lambda f: -f.gain_alone)
    chosen: list[FallbackNode] = []
    current, current_obj, final = base, base_obj, qdq_path
    for cand in measured:
        if len(chosen) >= budget:
            break
        if cand.gain_alone <= MIN_GAIN and chosen:
            break
        trial = [*(c.node for c in chosen), cand.node]
        path = requantize(trial, work_dir / f"fallback.step{len(chosen) + 1}.onnx")
        m = evaluate(path)
        gain = objective(m) - current_obj
        if gain <= MIN_GAIN:
            continue
        cand.gain, cand.snr_db_after, cand.top1_after = round(gain, 3), round(m.snr_db, 2), m.top1_agreement
        chosen.append(cand)
        current, current_obj, final = m, objective(m), path
        if check_gate(m, gate).passed:
            break
    after_gate = check_gate(current, gate)
    result.nodes, result.after = chosen, _metrics_json(current)
    result.gate_passed_after, result.failures_after = after_gate.passed, after_gate.failures
    result.final_path = final
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 2) if math.isfinite(value) else (999.0 if value > 0 else -999.0)


def gate_is_set(gate: Any) -> bool:
    return any(v is not None for v in asdict(gate).values())


def search_for_target(float_path: Path, qdq_path: Path, requantize: Callable[..., Path], ctx: Any) -> FallbackResult | None:
    """Run `search` with the profile's gate and budget; None when the profile has no gate to aim for."""
    gate = ctx.profile.validate.gate
    if not gate_is_set(gate):
        return None
    scheme = ctx.profile.quantize
    budget = ctx.options.max_fallback if ctx.options.max_fallback is not None else scheme.max_fallback
    feeds = evaluation_feeds(ctx)
    limit = scheme.options.get("fallback_candidates")
    with ctx.reporter.task("checking accuracy / mixed precision", total=None):
        result = search(float_path, qdq_path, requantize, feeds, gate, max(0, int(budget)), ctx.work_dir,
                        scheme.fallback, int(limit) if limit else None)
    if result.nodes:
        kept = ", ".join(f"{n.node} ({n.op_type}, +{n.gain:.1f})" for n in result.nodes)
        ctx.warn(f"kept {len(result.nodes)} node(s) in {scheme.fallback} to meet the accuracy gate: {kept}")
    return result


def layer_report(float_path: Path, quant_path: Path, ctx: Any, top: int = 50) -> list[dict[str, Any]]:
    rows = layer_errors(float_path, quant_path, evaluation_feeds(ctx)[:8])
    return [r.to_json() for r in rows[:top]]


__all__ = ["DQ_SUFFIX", "FallbackNode", "FallbackResult", "apply", "search", "search_for_target", "layer_report"]
