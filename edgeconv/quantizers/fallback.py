"""Accuracy-driven mixed precision: when the quantized model misses the profile's gate, keep the layers that cost the
most accuracy in higher precision until the gate passes or the budget (`--max-fallback` / quantize.max_fallback) is
spent.

1. Evaluate the all-integer model against the float ONNX on the validation samples (the gate's own metrics).
2. Rank the quantized activations (one per layer output) by the error each adds (per-layer comparison,
   layer_errors.py).
3. Measure the top candidates one by one (re-quantizing from the cached calibration ranges: no re-calibration) and
   order them by the accuracy each one buys back.
4. Add them greedily, keeping one only if it helps, until the gate passes or the budget is hit.
The manifest gets every kept layer with the nodes involved, its layer SNR and what it bought (dB of output SNR, top-1).

The unit is an activation tensor, not a node: in a QDQ graph a tensor is quantized when its producer OR any consumer is
quantized, so excluding one node alone changes nothing (measured). Fallback precision (quantize.fallback):
"fp32" / "fp16" exclude the tensor's producer (walking up through pass-through ops such as Relu / MaxPool / Reshape)
and its consumers, so it stays float (an fp16 target's compiler then runs those nodes in fp16); "int16" keeps
everything quantized and gives that tensor 16-bit activations (HTP-style W8A16 where it matters).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeconv.onnx_graph import consumers, producers
from edgeconv.quantizers.layer_errors import DQ_SUFFIX, layer_errors

log = logging.getLogger(__name__)

WIDE = {"uint8": "QUInt16", "int8": "QInt16", "uint16": "QUInt16", "int16": "QInt16"}
MIN_GAIN = 0.05  # objective units a node must buy back to be kept


PASS_THROUGH = frozenset({"Relu", "Clip", "LeakyRelu", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
                          "Unsqueeze", "Identity", "Resize", "Slice", "Split", "Gather", "Pad"})


@dataclass
class FallbackNode:
    tensor: str
    op_type: str  # of the node producing the tensor
    nodes: list[str]  # nodes kept out of quantization for it (fp32 / fp16 fallback, QOperator format)
    float_tensors: list[str]  # activations left float (fp32 / fp16 fallback, QDQ: weights stay integer)
    layer_snr_db: float | None
    layer_cost_db: float | None
    gain_alone: float  # objective gained when only this node falls back
    gain: float = 0.0  # objective gained when added to the ones before it
    snr_db_after: float | None = None
    top1_after: float | None = None
    item: str = ""  # what requantize() is given for it: the tensor, or NODES + tensor (its nodes excluded)
    unit: list[str] = field(default_factory=list)  # a search unit: the activations before the tensor, raised with it


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
    scored_on: str = "onnxruntime"  # the runtime the base model and each kept step were judged on
    target_unavailable: str = ""  # why the target's runtime could not judge the base model (then ORT did)
    final_path: Path | None = None

    def tensors(self) -> list[str]:
        return list(dict.fromkeys(t for n in self.nodes for t in (*n.unit, n.tensor)))

    def node_names(self) -> list[str]:
        return sorted({name for n in self.nodes for name in n.nodes})

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("final_path")
        for node in out["nodes"]:
            node.pop("item", None)
        return out


def objective(ev: Evaluation) -> float:
    """One number to climb: worst output SNR in dB (whole output, or its worst channel for rank >= 3 outputs if that
    is lower) plus 50 per unit of top-1 agreement where outputs are class scores."""
    metrics = ev.metrics
    value = float(metrics.snr_db)
    if ev.channel_snr_db is not None:
        value = min(value, ev.channel_snr_db)
    if metrics.top1_agreement is not None:
        value += 50.0 * float(metrics.top1_agreement)
    return value


def passes(ev: Evaluation, gate: Any) -> tuple[bool, tuple[str, ...]]:
    """The profile's gate, plus: with min_snr_db set, the worst channel of rank >= 3 outputs must reach half of it."""
    from edgeconv.validation import check_gate

    result = check_gate(ev.metrics, gate)
    failures = list(result.failures)
    if gate.min_snr_db is not None and ev.channel_snr_db is not None and ev.channel_snr_db < gate.min_snr_db / 2:
        failures.append(f"worst output channel SNR {ev.channel_snr_db:.1f} dB < {gate.min_snr_db / 2:.1f} dB")
    return not failures, tuple(failures)


def nodes_for_tensor(model: Any, tensor: str) -> list[str]:
    """Nodes to keep out of quantization so that `tensor` stays float: its consumers, its producer, and the producers
    above it through pass-through ops (Relu, MaxPool, Reshape... carry their input's quantization)."""
    producer = producers(model.graph)
    names: list[str] = [n.name for n in model.graph.node if tensor in n.input and n.name]
    current = producer.get(tensor)
    while current is not None:
        if current.name:
            names.append(current.name)
        if current.op_type not in PASS_THROUGH or not current.input:
            break
        current = producer.get(current.input[0])
    return list(dict.fromkeys(names))


def tensors_chain(model: Any, tensor: str) -> list[str]:
    """`tensor` and the tensors above it through pass-through producers (Relu, MaxPool, Reshape...), which carry the
    same quantization range."""
    producer = producers(model.graph)
    chain, current = [tensor], producer.get(tensor)
    while current is not None and current.op_type in PASS_THROUGH and current.input:
        chain.append(current.input[0])
        current = producer.get(current.input[0])
    return chain


def ancestor_tensors(model: Any, tensor: str, limit: int = 16) -> list[str] | None:
    """The activations computed before `tensor` (every node output it depends on, up to the graph inputs), in graph
    order; None when more than `limit` nodes feed it (a unit that large is not a front end)."""
    producer = producers(model.graph)
    seen: set[int] = set()
    stack = [producer[tensor]] if tensor in producer else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > limit:
            return None
        stack.extend(producer[i] for i in node.input if i in producer)
    return [o for n in model.graph.node if id(n) in seen for o in n.output if o and o != tensor]


QIN_SUFFIX = "_QuantizeLinear_Input"
NODES = "nodes:"  # requantize() item prefix: keep the tensor float by excluding its nodes (weights float too)
UNIT = "unit:"  # search item: the tensor and everything computed before it (a front end: STFT → power → mel → log)
NODE_VARIANT_MARGIN = 1.0  # objective units the node variant must beat the activation-only variant by


def strip_qdq(path: Path, tensors: set[str]) -> int:
    """Remove the QuantizeLinear→DequantizeLinear pairs ONNX Runtime put on `tensors` in a QDQ model, so those
    activations stay float while every weight stays integer (its own DequantizeLinear is untouched). The nodes around
    run in float on dequantized weights. Returns the number of pairs removed."""
    import onnx

    model = onnx.load_model(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    readers = consumers(graph)
    removed: set[int] = set()
    renames: dict[str, str] = {}
    pairs = 0
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        source = q.input[0]
        base = source[: -len(QIN_SUFFIX)] if source.endswith(QIN_SUFFIX) else source
        users = readers.get(q.output[0], [])
        if base not in tensors or not users or any(u.op_type != "DequantizeLinear" for u in users):
            continue
        for dq in users:
            if dq.output[0] in outputs:  # a graph output: the producer wrote T_QuantizeLinear_Input; give it T back
                renames[source] = dq.output[0]
            else:
                renames[dq.output[0]] = source
            removed.add(id(dq))
        removed.add(id(q))
        pairs += 1
    if not pairs:
        return 0

    def final(name: str) -> str:
        seen = 0
        while name in renames and seen < 16:
            name, seen = renames[name], seen + 1
        return name

    kept = [n for n in graph.node if id(n) not in removed]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = final(name)
        for i, name in enumerate(node.output):
            node.output[i] = final(name)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in graph.node for name in n.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    produced = {name for n in graph.node for name in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    onnx.save_model(model, str(path))
    return pairs


def apply(float_path: Path, tensors: list[str], precision: str, activations: str) -> tuple[list[str], dict[str, Any] | None]:
    """(nodes to exclude from quantization, TensorQuantOverrides) that keep `tensors` at `precision`."""
    if not tensors:
        return [], None
    import onnx

    model = onnx.load_model(str(float_path), load_external_data=False)
    if precision != "int16":
        return sorted({n for t in tensors for n in nodes_for_tensor(model, t)}), None
    from onnxruntime.quantization import QuantType

    wide = getattr(QuantType, WIDE[activations])
    return [], {t: [{"quant_type": wide}] for t in tensors}


@dataclass
class Evaluation:
    """The gate's metrics, plus the worst channel SNR of rank >= 3 outputs (axis 1): a detector head concatenating
    pixel boxes and 0..1 scores keeps a fine whole-output SNR while its score channels are noise."""

    metrics: Any
    channel_snr_db: float | None = None

    @classmethod
    def of(cls, names: list[str], references: list[list[Any]], actuals: list[list[Any]]) -> "Evaluation":
        """The gate's metrics of `actuals` against `references` (per sample, the outputs in order)."""
        from edgeconv.quantizers.layer_errors import _Accumulator
        from edgeconv.validation import compare

        channel: float | None = None
        for i, ref in enumerate(references[0] if references else []):
            if np.asarray(ref).ndim < 3 or np.asarray(ref).dtype.kind != "f":
                continue
            acc = _Accumulator()
            for refs, acts in zip(references, actuals):
                acc.add(refs[i], acts[i])
            worst = min(acc.worst_channel(), 300.0)
            channel = worst if channel is None else min(channel, worst)
        return cls(compare(names, references, actuals), channel)


class Evaluator:
    """Float ONNX outputs on fixed samples, computed once; quantized candidates compared against them."""

    def __init__(self, float_path: Path, feeds: list[dict[str, np.ndarray]],
                 sessions: Callable[[Path], Any] | None = None):
        from edgeconv.runtimes.ort import cpu_session

        self.feeds = feeds
        self.sessions = sessions or (lambda path: cpu_session(str(path)))  # QDQ path → session (target_scoring.py)
        session = cpu_session(str(float_path))
        self.names = [o.name for o in session.get_outputs()]
        self.references = [session.run(None, self._feed(session, f)) for f in feeds]

    def on(self, sessions: Callable[[Path], Any] | None) -> "Evaluator":
        """The same references, candidates run by `sessions` (None: this evaluator itself)."""
        if sessions is None:
            return self
        other = object.__new__(Evaluator)
        other.feeds, other.names, other.references, other.sessions = self.feeds, self.names, self.references, sessions
        return other

    @staticmethod
    def _feed(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = {i.name for i in session.get_inputs()}
        return {k: v for k, v in feeds.items() if k in wanted}

    def evaluate(self, quant_path: Path) -> Evaluation:
        session = self.sessions(quant_path)
        actuals = [session.run(None, self._feed(session, f)) for f in self.feeds]
        return Evaluation.of(self.names, self.references, actuals)

    def __call__(self, quant_path: Path) -> Any:
        return self.evaluate(quant_path).metrics


def evaluation_feeds(ctx: Any) -> list[dict[str, np.ndarray]]:
    """The samples the validate stage will use (same folder, count and seed), materialised (a few dozen at most)."""
    from edgeconv.quantizers.calibration import RANDOM, open_samples, preprocess_spec

    options = ctx.options
    spec = options.eval or (options.calib if options.calib != RANDOM else None)
    samples = open_samples(spec, ctx.source.inputs, ctx.profile.validate.samples, seed=options.seed + 1,
                           purpose="validation", preprocess=preprocess_spec(ctx))
    return list(samples)


def _metrics_json(ev: Evaluation) -> dict[str, Any]:
    m = ev.metrics
    out = {"snr_db": round(m.snr_db, 2), "cosine": m.cosine, "top1_agreement": m.top1_agreement, "max_abs": m.max_abs}
    if ev.channel_snr_db is not None:
        out["worst_channel_snr_db"] = round(ev.channel_snr_db, 2)
    return out


def search(float_path: Path, qdq_path: Path, requantize: Callable[[list[str], Path], Path], feeds: list[dict[str, Any]],
           gate: Any, budget: int, work_dir: Path, precision: str, max_candidates: int | None = None,
           exclude_nodes: bool = False, rank_path: Path | None = None,
           target_sessions: Callable[[Path], Any] | None = None) -> FallbackResult:
    """Keep the costliest layers in `precision` until `qdq_path`'s successors pass `gate` (at most `budget`).
    Candidates are ranked by their per-layer error in `rank_path` (a QDQ graph; default `qdq_path`); every trial is
    a model `requantize` writes, judged on its outputs. With `target_sessions` (target_scoring.py) the base model and
    every step kept are judged on the target's runtime; single candidates are measured on ONNX Runtime's CPU."""
    started = time.perf_counter()
    from edgeconv.quantizers.target_scoring import TargetUnavailable

    evaluator = Evaluator(float_path, feeds)
    evaluate = evaluator.evaluate
    judge = evaluator.on(target_sessions).evaluate
    unavailable = ""
    try:
        base = judge(qdq_path)
    except TargetUnavailable as e:  # the converter's checks name what the target refuses; score on ORT meanwhile
        unavailable, target_sessions, judge = str(e), None, evaluate
        base = judge(qdq_path)
    base_passed, base_failures = passes(base, gate)
    result = FallbackResult(precision, budget, base_passed, base_passed, _metrics_json(base),
                            _metrics_json(base), base_failures, final_path=qdq_path, target_unavailable=unavailable)
    if base_passed or budget <= 0:
        result.seconds = round(time.perf_counter() - started, 2)
        return result
    import onnx

    float_model = onnx.load_model(str(float_path), load_external_data=False)
    rows = [r for r in layer_errors(float_path, rank_path or qdq_path, feeds[:8]) if r.quantized]
    rows.sort(key=lambda r: -r.cost_db)
    limit = max_candidates or max(6, 2 * budget)
    measured: list[FallbackNode] = []
    base_obj = objective(evaluate(qdq_path)) if target_sessions else objective(base)  # candidates' gains: on ORT
    floating = precision != "int16"
    units: dict[str, list[str]] = {}
    unit_variants: dict[int, tuple[float, str]] = {}  # candidate index → (gain, unit item), used if no tensor suffices
    any_passed_alone = False

    def expand(items: list[str]) -> list[str]:
        """Search items → what requantize() takes: a unit is its tensor and the activations before it."""
        out: list[str] = []
        for item in items:
            if item.startswith(UNIT):
                out += [t for t in units[item] if t not in out]
            elif item not in out:
                out.append(item)
        return out

    for i, row in enumerate(rows[:limit]):
        alone = evaluate(requantize([row.tensor], work_dir / f"fallback.try{i}.onnx"))
        gain = objective(alone) - base_obj
        nodes = nodes_for_tensor(float_model, row.tensor) if floating and exclude_nodes else []
        float_tensors = tensors_chain(float_model, row.tensor) if floating and not exclude_nodes else []
        item = row.tensor
        if floating and not exclude_nodes and not passes(alone, gate)[0]:  # QDQ: float activation, or nodes too?
            node_gain = objective(evaluate(requantize([NODES + row.tensor], work_dir / f"fallback.try{i}n.onnx"))) - base_obj
            if node_gain > gain + NODE_VARIANT_MARGIN:
                gain, item, float_tensors = node_gain, NODES + row.tensor, []
                nodes = nodes_for_tensor(float_model, row.tensor)
        passed_alone = passes(alone, gate)[0]
        any_passed_alone = any_passed_alone or passed_alone
        before = ancestor_tensors(float_model, row.tensor) if not any_passed_alone else None
        if before and not item.startswith(NODES):  # a front end whose every step loses range (log of a power)
            unit = UNIT + row.tensor
            units[unit] = [*before, row.tensor]
            unit_gain = objective(evaluate(requantize(expand([unit]), work_dir / f"fallback.try{i}u.onnx"))) - base_obj
            if unit_gain > gain + NODE_VARIANT_MARGIN:
                unit_variants[len(measured)] = (unit_gain, unit)
        measured.append(FallbackNode(row.tensor, row.op_type, nodes, float_tensors, _finite(row.snr_db),
                                     _finite(row.cost_db), round(gain, 3), item=item))
    if not any_passed_alone:  # no single tensor is enough: the units that bought more replace their tensor
        for index, (unit_gain, unit) in unit_variants.items():
            cand = measured[index]
            cand.gain_alone, cand.item, cand.unit = round(unit_gain, 3), unit, units[unit][:-1]
            cand.float_tensors = sorted({t for name in units[unit] for t in tensors_chain(float_model, name)}) \
                if floating and not exclude_nodes else []
            cand.nodes = sorted({n for name in units[unit] for n in nodes_for_tensor(float_model, name)}) \
                if floating and exclude_nodes else []
    result.candidates_measured = len(measured)
    measured.sort(key=lambda f: (-f.gain_alone, -(f.layer_cost_db or 0.0)))
    chosen: list[FallbackNode] = []
    current, current_obj, final = base, objective(base), qdq_path
    for cand in measured:
        if len(chosen) >= budget:
            break
        if cand.gain_alone <= MIN_GAIN and chosen and not target_sessions:  # on the target, ORT's gains say little
            break
        trial = expand([*(c.item for c in chosen), cand.item])
        path = requantize(trial, work_dir / f"fallback.step{len(chosen) + 1}.onnx")
        try:
            m = judge(path)
        except TargetUnavailable as e:  # this step makes a graph the target refuses: not a step to keep
            log.debug("fallback step with %s skipped: the target cannot run it (%s)", cand.tensor, e)
            continue
        gain = objective(m) - current_obj
        if gain <= MIN_GAIN:
            continue
        cand.gain, cand.snr_db_after, cand.top1_after = round(gain, 3), round(m.metrics.snr_db, 2), m.metrics.top1_agreement
        chosen.append(cand)
        current, current_obj, final = m, objective(m), path
        if passes(m, gate)[0]:
            break
    result.nodes, result.after = chosen, _metrics_json(current)
    result.gate_passed_after, result.failures_after = passes(current, gate)
    result.final_path = final
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 2) if math.isfinite(value) else (999.0 if value > 0 else -999.0)


def gate_is_set(gate: Any) -> bool:
    return any(v is not None for v in asdict(gate).values())


def search_for_target(float_path: Path, qdq_path: Path, requantize: Callable[..., Path], ctx: Any,
                      rank_path: Path | None = None) -> FallbackResult | None:
    """Run `search` with the profile's gate and budget; None when the profile has no gate to aim for."""
    gate = ctx.profile.validate.gate
    if not gate_is_set(gate):
        return None
    scheme = ctx.profile.quantize
    budget = ctx.options.max_fallback if ctx.options.max_fallback is not None else scheme.max_fallback
    feeds = evaluation_feeds(ctx)
    limit = scheme.options.get("fallback_candidates")
    from edgeconv.quantizers.target_scoring import session_factory

    sessions = session_factory(ctx)
    label = f" on {ctx.profile.validate.runtime}" if sessions else ""
    with ctx.reporter.task(f"checking accuracy / mixed precision{label}", total=None):
        result = search(float_path, qdq_path, requantize, feeds, gate, max(0, int(budget)), ctx.work_dir,
                        scheme.fallback, int(limit) if limit else None, exclude_nodes=scheme.format == "qoperator",
                        rank_path=rank_path, target_sessions=sessions)
    if sessions and not result.target_unavailable:
        result.scored_on = ctx.profile.validate.runtime
    elif sessions:
        ctx.warn(f"the accuracy search could not run the model on {ctx.profile.validate.runtime} "
                 f"({result.target_unavailable}); it was judged on ONNX Runtime's CPU")
    if result.nodes:
        kept = ", ".join(f"{n.tensor} (from {n.op_type}{f', with the {len(n.unit)} before it' if n.unit else ''}, "
                         f"+{n.gain:.1f})" for n in result.nodes)
        ctx.warn(f"kept {len(result.nodes)} layer output(s) in {scheme.fallback} to meet the accuracy gate: {kept}")
    return result


def layer_report(float_path: Path, quant_path: Path, ctx: Any, top: int = 50) -> list[dict[str, Any]]:
    rows = layer_errors(float_path, quant_path, evaluation_feeds(ctx)[:8])
    return [r.to_json() for r in rows[:top]]


__all__ = ["DQ_SUFFIX", "FallbackNode", "FallbackResult", "apply", "nodes_for_tensor", "search", "search_for_target",
           "layer_report", "strip_qdq", "tensors_chain", "NODES"]
