"""Mixed-bit palettization: when every weight at the profile's palette width (4 or 6 bits) misses the accuracy gate,
keep the weights that cost the most accuracy per byte one width higher, as few as pass the gate, within a size budget
(Apple's mixed-bit recipe, chosen by measurement on this model instead of a preset).

A raised weight gets the next palette width (4 → 6 bits, 6 → 8 bits), or stays float16 where that is smaller (a
256-entry float16 table is 512 bytes: an 8-bit palette of a few hundred weights outweighs the weights). On the corpus
it is usually the first conv and a few projections: ResNet at 4 bits passes with 2 weights raised (4.03 bits per
weight), EfficientNet-B0 with 5 (4.48).

1. Palettize every weight at the profile's width and at the raised width once (coremltools' k-means, memoised so that
   the final compression reuses the tables: identical results), and keep both decompressed copies.
2. Judge a mix on the float MIL program with those weights swapped in (the NumPy reference executor,
   `run_program(consts=...)`), against the source's outputs on the validation samples: the gate the structural check
   applies to the package afterwards. Nothing is rebuilt or re-clustered per trial.
3. Every weight raised must pass; where the next width everywhere does not, raised weights stay float16 instead (a
   weight deciding a scripted branch), and where that does not either, bits cannot buy the gate: the search stops. Screen: on a few samples, what the
   all-raised model loses when each weight alone goes back to the base width; order by that loss per byte saved.
4. Bisect for the longest prefix of that order that can go back with the gate still passing, then try the next few
   raised weights one by one. Over the budget: the most valuable weights per byte within it (the gate then fails, and
   `needed_average_bits` says what passing took).

Budget: `quantize.options.max_average_bits`, bits per compressed weight element, palette tables included (unset: the
width + 1.5; the width itself turns the search off). `--max-fallback N` caps the number of weights raised too;
`--max-fallback 0` turns the search off. The manifest has it all in notes.coreml_mixed_bits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from edgeconv.quantizers.fallback import Evaluation, passes

RAISED_BITS = {4: 6, 6: 8}  # palette width → the width a raised weight gets (one step up: tables stay small)
LUT_ENTRY_BYTES = 2  # float16 look-up tables
SCREEN_SAMPLES = 4  # samples each single-weight trial is measured on
REFINE_TRIALS = 8  # after the bisection, the raised weights tried one by one at the base width again
DEFAULT_EXTRA_BITS = 1.5  # budget over the width: 4-bit → 5.5 bits per weight, still 2.9x smaller than float16


@dataclass
class RaisedWeight:
    name: str  # the const op's name in the float program
    elements: int
    storage: str  # "palette6" | "palette8" | "float16"
    extra_bytes: int  # what raising it costs over the base palette
    loss_alone: float  # dB the every-weight-raised model loses when only this one goes back (screening samples)


@dataclass
class MixedBitResult:
    bits: int
    raised_bits: int  # the width a raised weight gets; 16: float16 (the next width everywhere missed the gate)
    max_average_bits: float
    average_bits_before: float
    average_bits: float
    passed_before: bool
    passed_after: bool
    before: dict[str, Any]
    after: dict[str, Any]
    ceiling: dict[str, Any] | None = None  # every candidate raised: the best the search could reach
    failures_after: tuple[str, ...] = ()
    raised: list[RaisedWeight] = field(default_factory=list)
    candidates_measured: int = 0
    trials: int = 0  # whole-sample evaluations of a mixed-bit model
    needed_average_bits: float | None = None  # what passing took, where that was over the budget
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures_after"] = list(self.failures_after)
        return out


def palette_bytes(elements: int, bits: int) -> int:
    """Stored size of a palettized weight: its indices and its float16 look-up table."""
    return -(-elements * bits // 8) + LUT_ENTRY_BYTES * 2**bits


def package_average_bits(weights: list[dict[str, Any]], raised: dict[str, str]) -> float:
    """Bits per weight element over a package's palettized weights and the ones the search kept float16
    (`weights`: _spec.inspect_package's list), counted as the search counts them."""
    stored = elements = 0
    for w in weights:
        if w["compression"] == "palettized" and str(w["storage"]).startswith("UINT"):
            stored += palette_bytes(int(w["elements"]), int(str(w["storage"])[4:]))
        elif w["compression"] is None and raised.get(str(w["name"])) == "float16":
            stored += 2 * int(w["elements"])
        else:
            continue
        elements += int(w["elements"])
    return 8 * stored / elements if elements else 0.0


@dataclass
class _Weight:
    name: str
    elements: int
    low: np.ndarray  # decompressed at the profile's width
    high: np.ndarray | None  # decompressed at the raised width; None: raised, it stays float16 (smaller)
    high_bits: int

    def low_bytes(self, bits: int) -> int:
        return palette_bytes(self.elements, bits)

    def high_bytes(self) -> int:
        return self.elements * 2 if self.high is None else palette_bytes(self.elements, self.high_bits)


def _metrics_json(ev: Evaluation) -> dict[str, Any]:
    m = ev.metrics
    return {"snr_db": round(float(m.snr_db), 2), "cosine": m.cosine, "top1_agreement": m.top1_agreement}


@contextlib.contextmanager
def memoised_kmeans() -> Iterator[None]:
    """coremltools' k-means, memoised on (width, weight bytes): the search clusters every weight at both widths once
    and the final compression reuses those tables (identical results: coremltools' k-means is deterministic)."""
    from unittest import mock

    from coremltools.optimize.coreml import _quantization_passes as passes_module

    original = passes_module._get_kmeans_lookup_table_and_weight
    cache: dict[tuple, Any] = {}

    def cached(nbits: int, val: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        data = np.ascontiguousarray(val)
        key = (nbits, data.dtype.str, data.shape, hashlib.blake2b(data.tobytes(), digest_size=16).digest(),
               args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(nbits, val, *args, **kwargs)
        return cache[key]

    with mock.patch.object(passes_module, "_get_kmeans_lookup_table_and_weight", cached):
        yield


def _decompressed(mlmodel: Any, config: Any) -> dict[str, np.ndarray]:
    """{float const name: decompressed values} of every weight coremltools palettizes under `config`."""
    import coremltools.optimize.coreml as cto

    from edgeconv.targets.coreml._mil_reference import all_operations, program_of

    program = program_of(cto.palettize_weights(mlmodel, config))
    out = {}
    for op in all_operations(program.functions["main"]):  # a scripted branch's or loop's weights too
        if op.op_type == "constexpr_lut_to_dense":
            out[op.outputs[0].name.removesuffix("_palettized")] = np.asarray(op.materialized_val_inference())
    return out


class Judge:
    """The float MIL program run with candidate weights swapped in, compared with the source's outputs."""

    def __init__(self, program: Any, run: Callable[[Any, dict[str, np.ndarray] | None, int | None], list[list[Any]]],
                 names: list[str], references: list[list[Any]]):
        self.program, self.run, self.names, self.references = program, run, names, references

    def __call__(self, consts: dict[str, np.ndarray] | None, samples: int | None = None) -> Evaluation:
        actuals = self.run(self.program, consts, samples)
        references = self.references[:samples] if samples else self.references
        return Evaluation.of(self.names, references, actuals)


def search(mlmodel: Any, low_config: Any, high_config: Any, bits: int, judge: Judge, gate: Any,
           max_average_bits: float, max_raised: int | None = None,
           progress: Callable[[], None] | None = None) -> tuple[list[RaisedWeight], MixedBitResult]:
    """The weights to raise (const op names of the float program) so that palettizing the rest at `bits` passes
    `gate`, within `max_average_bits` and `max_raised`; and what the search measured. `low_config` / `high_config`:
    coremltools' palettization at `bits` and at RAISED_BITS[bits]."""
    started = time.perf_counter()
    high_bits = RAISED_BITS[bits]
    weights = [_Weight(name, int(values.size), values, None, high_bits)
               for name, values in _decompressed(mlmodel, low_config).items()]
    total_elements = sum(w.elements for w in weights) or 1
    base_bytes = sum(w.low_bytes(bits) for w in weights)
    everything = {w.name for w in weights}
    trials = 0

    def evaluate(raised: set[str], samples: int | None = None) -> Evaluation:
        """The program with `raised` at the raised width (or float16) and every other weight at `bits`."""
        nonlocal trials
        consts: dict[str, np.ndarray] = {}
        for w in weights:  # a raised float16 weight keeps the program's own value
            if w.name not in raised:
                consts[w.name] = w.low
            elif w.high is not None:
                consts[w.name] = w.high
        trials += samples is None
        if progress:
            progress()
        return judge(consts, samples)

    def average_bits(raised: list[RaisedWeight]) -> float:
        return round(8 * (base_bytes + sum(c.extra_bytes for c in raised)) / total_elements, 3)

    def finish(raised: list[RaisedWeight], current: Evaluation) -> tuple[list[RaisedWeight], MixedBitResult]:
        result.raised, result.after, result.average_bits = raised, _metrics_json(current), average_bits(raised)
        result.passed_after, result.failures_after = passes(current, gate)
        result.trials, result.seconds = trials, round(time.perf_counter() - started, 2)
        return raised, result

    base = evaluate(set())
    result = MixedBitResult(bits, high_bits, max_average_bits, average_bits([]), average_bits([]), passes(base, gate)[0], False,
                            _metrics_json(base), _metrics_json(base))
    if result.passed_before or (max_raised is not None and max_raised <= 0) or not weights:
        return finish([], base)
    high = _decompressed(mlmodel, high_config)  # clustered only now: most models pass at the uniform width
    for w in weights:
        if palette_bytes(w.elements, high_bits) < 2 * w.elements:  # else float16 is smaller: it stays float16
            w.high = high.get(w.name)
    ceiling = evaluate(everything)
    if not passes(ceiling, gate)[0] and any(w.high is not None for w in weights):
        # the next width everywhere is not enough (a weight deciding a scripted branch): raised weights stay float16
        for w in weights:
            w.high = None
        result.raised_bits = 16
        ceiling = evaluate(everything)
    result.ceiling = _metrics_json(ceiling)
    if not passes(ceiling, gate)[0]:  # not even every weight raised passes: nothing to buy with bits
        return finish([], base)
    screen = min(SCREEN_SAMPLES, len(judge.references))
    screen_ceiling = _screen_objective(evaluate(everything, screen))
    candidates = []
    for w in weights:  # what each weight costs when it alone goes back to the base width
        loss = screen_ceiling - _screen_objective(evaluate(everything - {w.name}, screen))
        candidates.append(RaisedWeight(w.name, w.elements, f"palette{w.high_bits}" if w.high is not None else "float16",
                                       w.high_bytes() - w.low_bytes(bits), round(loss, 3)))
    result.candidates_measured = len(candidates)
    # least accuracy per byte saved first: lowering a prefix of this order trades the least accuracy per byte
    candidates.sort(key=lambda c: c.loss_alone / max(c.extra_bytes, 1))
    measured: dict[int, Evaluation] = {0: ceiling, len(candidates): base}

    def lowered(k: int) -> Evaluation:  # candidates[:k] back at the base width
        if k not in measured:
            measured[k] = evaluate({c.name for c in candidates[k:]})
        return measured[k]

    low_k, high_k = 0, len(candidates)  # the gate passes with candidates[:low_k] lowered, fails with [:high_k]
    while high_k - low_k > 1:
        mid = (low_k + high_k) // 2
        low_k, high_k = (mid, high_k) if passes(lowered(mid), gate)[0] else (low_k, mid)
    raised, current = candidates[low_k:], lowered(low_k)
    for cand in raised[:REFINE_TRIALS]:  # the order is an estimate: some of the rest may go back too
        trial = evaluate({c.name for c in raised if c is not cand})
        if passes(trial, gate)[0]:
            raised, current = [c for c in raised if c is not cand], trial
    if average_bits(raised) > max_average_bits or (max_raised is not None and len(raised) > max_raised):
        # over the budget: the most accuracy per byte within it (it misses the gate; the validation says by how much)
        result.needed_average_bits = average_bits(raised)
        kept: list[RaisedWeight] = []
        for cand in sorted(raised, key=lambda c: -c.loss_alone / max(c.extra_bytes, 1)):
            if average_bits([*kept, cand]) <= max_average_bits and (max_raised is None or len(kept) < max_raised):
                kept.append(cand)
        raised, current = kept, evaluate({c.name for c in kept})
    return finish(raised, current)


def _screen_objective(ev: Evaluation) -> float:
    """objective() without its top-1 term: on a few screening samples one flip would outweigh every dB."""
    value = float(ev.metrics.snr_db)
    return min(value, ev.channel_snr_db) if ev.channel_snr_db is not None else value


def palettize(mlmodel: Any, ctx: Any) -> Any:
    """The profile's palettization of `mlmodel`'s weights, mixed-bit where the uniform width misses the gate (see the
    module docstring); what the search did goes to notes.coreml_mixed_bits."""
    from edgeconv.quantizers.fallback import evaluation_feeds, gate_is_set
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml._mil_reference import program_of, run_in_source_order

    scheme = ctx.profile.quantize
    bits = cq.PALETTE_BITS[scheme.precision]
    budget = scheme.options.get("max_average_bits")
    budget = float(budget) if budget is not None else bits + DEFAULT_EXTRA_BITS
    max_raised = ctx.options.max_fallback  # only when given on the command line: the budget here is bits
    gate = ctx.profile.validate.gate
    if not gate_is_set(gate) or budget <= bits or max_raised == 0:
        with quiet():
            return cq.compress_weights(mlmodel, scheme)

    skip = cq.non_finite_consts(mlmodel)
    feeds = evaluation_feeds(ctx)
    references = _source_references(ctx, feeds)
    program = program_of(mlmodel)

    def run(program: Any, consts: dict[str, np.ndarray] | None, samples: int | None) -> list[list[Any]]:
        return run_in_source_order(program, ctx.source.inputs, ctx.source.output_names, feeds[:samples] if samples else feeds,
                                   consts)[1]

    names = run_in_source_order(program, ctx.source.inputs, ctx.source.output_names, [])[0]
    judge = Judge(program, run, names, references)
    with memoised_kmeans():
        try:
            with ctx.reporter.task(f"{ctx.profile.name}: mixed-bit palette search", total=None) as task, quiet():
                raised, result = search(mlmodel, cq.weight_config(scheme, skip),
                                        cq.weight_config(scheme, skip, nbits=RAISED_BITS[bits]), bits, judge,
                                        gate, budget, max_raised, task.advance)
        except NotImplementedError as e:  # an op the reference executor lacks: the uniform palette, unjudged here
            ctx.notes["coreml_mixed_bits"] = {"ran": False, "reason": f"the reference executor has no '{e}' op"}
            with quiet():
                return cq.compress_weights(mlmodel, scheme)
        ctx.notes["coreml_mixed_bits"] = result.to_json()
        (ctx.work_dir / "mixed_bits.json").write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
        if raised:
            wider = "float16" if result.raised_bits == 16 else f"{result.raised_bits}-bit palette or float16"
            ctx.warn(f"{ctx.profile.name}: {len(raised)} weight(s) raised above {bits} bits to meet the accuracy gate "
                     f"({wider}; {result.average_bits:.2f} bits per weight on average): "
                     + ", ".join(w.name for w in raised[:5]) + (f" and {len(raised) - 5} more" if len(raised) > 5 else ""))
        with quiet():
            return cq.compress_weights(mlmodel, scheme, {w.name: w.storage for w in raised})


def _source_references(ctx: Any, feeds: list[dict[str, np.ndarray]]) -> list[list[Any]]:
    """The source model's outputs on `feeds`: what the validation's reference check compares with."""
    from edgeconv.runtimes import runtime_for_source
    from edgeconv.validation import check_source_outputs

    session = runtime_for_source(ctx.source.artifact.format)().load(ctx.source.artifact, ctx)
    outputs = []
    for i, sample in enumerate(feeds):
        out = session.run(sample)
        check_source_outputs(out, i)
        outputs.append(out)
    return outputs
