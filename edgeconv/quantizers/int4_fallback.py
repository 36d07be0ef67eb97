"""Accuracy-driven fallback for block-wise int4 weights: when the int4 model misses the profile's gate, keep the
weights that cost the most in float, one node at a time, until the gate passes or the budget (`--max-fallback` /
quantize.max_fallback) is spent.

Int4 is weight-only and needs no calibration, so a candidate costs one re-quantization (round to nearest: fast) and
one run on the validation samples. Each quantized node (a MatMul or an embedding Gather) is measured alone with its
weights kept float, ranked by what it buys back (fallback.objective: worst output SNR, plus top-1 agreement where the
outputs are class scores), and added greedily, kept only if it helps. Measured on the corpus's Keras classifier: the
logits MatMul alone took top-1 agreement from 0.84 to the gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeconv.quantizers.fallback import MIN_GAIN, Evaluator, evaluation_feeds, gate_is_set, objective, passes

MAX_PROBES = 32  # nodes measured alone, at most (the largest weights first)


@dataclass
class Int4Fallback:
    budget: int
    kept: list[str] = field(default_factory=list)
    gains: dict[str, float] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    candidates_measured: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "kept_float": self.kept, "gains": {k: round(v, 2) for k, v in self.gains.items()},
                "before": self.before, "after": self.after, "candidates_measured": self.candidates_measured,
                "seconds": round(self.seconds, 2)}


def _summary(ev: Any) -> dict[str, Any]:
    m = ev.metrics
    return {"snr_db": round(m.snr_db, 2), "cosine": round(m.cosine, 6), "top1_agreement": m.top1_agreement}


def search(float_path: Path, quantize: Callable[[list[str], Path], Path], candidates: list[str], ctx: Any,
           first: Path) -> tuple[Path, Int4Fallback | None]:
    """`quantize(kept_float_nodes, out_path)` writes an int4 model; `candidates`: quantizable node names, largest
    weights first; `first`: the model with none kept. Returns the model to ship and what the search did (None when the
    profile has no gate or the first model passes it)."""
    gate = ctx.profile.validate.gate
    if not gate_is_set(gate):
        return first, None
    scheme = ctx.profile.quantize
    budget = max(0, int(ctx.options.max_fallback if ctx.options.max_fallback is not None else scheme.max_fallback))
    started = time.perf_counter()
    evaluator = Evaluator(float_path, evaluation_feeds(ctx))
    base = evaluator.evaluate(first)
    if passes(base, gate)[0] or not budget:
        return first, None
    result = Int4Fallback(budget, before=_summary(base))
    base_score = objective(base)
    alone: list[tuple[float, str]] = []
    with ctx.reporter.task("int4: measuring which weights to keep float", total=min(len(candidates), MAX_PROBES)) as task:
        for i, node in enumerate(candidates[:MAX_PROBES]):
            ev = evaluator.evaluate(quantize([node], ctx.work_dir / f"probe_{i}.onnx"))
            alone.append((objective(ev) - base_score, node))
            result.candidates_measured += 1
            task.advance()
    kept: list[str] = []
    best_path, best_ev, best_score = first, base, base_score
    for gain, node in sorted(alone, reverse=True):
        if len(kept) >= budget or gain < MIN_GAIN:
            break
        path = quantize([*kept, node], ctx.work_dir / f"kept_{len(kept) + 1}.onnx")
        ev = evaluator.evaluate(path)
        score = objective(ev)
        if score - best_score < MIN_GAIN:
            continue
        kept.append(node)
        result.gains[node] = score - best_score
        best_path, best_ev, best_score = path, ev, score
        if passes(ev, gate)[0]:
            break
    result.kept, result.after, result.seconds = kept, _summary(best_ev), time.perf_counter() - started
    if kept:
        ctx.warn(f"{ctx.profile.name}: kept {len(kept)} weight(s) in float to meet the accuracy gate: "
                 + ", ".join(f"{n} (+{result.gains[n]:.1f})" for n in kept))
    return best_path, result
