"""Numbers that say whether a converted model still computes what the source did, and the gates they must pass.

Per output: max / mean absolute error, cosine similarity, SNR in dB (capped at 300 dB, i.e. identical to float32
precision) and, when the output looks like class scores ([N, C] or [C] with C > 1), top-1 agreement. Integer and
bool outputs (indices, masks) are judged by exact match instead.

A top-k post-process (an int index output beside the sorted values it picked, and outputs gathered by it, as a
detector's boxes) is compared by index, not by position: where two near-tied scores swap places, the same detections
come out in another order. The converted model's rows are put in the source's index order first (topk_alignment), so
the index output's exact match is the share of the source's picks the converted model also picked, and the values and
gathered outputs are compared pick by pick. A pick that differs only by a tie at the cut-off (its score within the
noise measured on the common picks: topk_ties) is not counted against the model; the share of such ties is reported.

Class scores are treated alike (top1_ties): a sample whose top-1 changed only because the source's two classes were
nearer than the conversion's noise on that sample's other scores can move them apart is a tie, not a changed
prediction; any model, fp16 included, flips it. top1_agreement stays the plain share; the gate counts the ties as
agreeing where the output meets every other bound (check_gate), and the share of ties is reported. A flip beyond the
noise counts in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from edgeconv.errors import InvalidInputError
from edgeconv.targets.schema import Gate

SNR_CAP_DB = 300.0


@dataclass(frozen=True)
class OutputMetrics:
    """One output's numbers. `kind` follows the source's dtype: "float" outputs are judged by SNR / cosine / max abs
    (and top-1 agreement when they look like class scores); "integer" (indices, token ids) and "bool" (masks) outputs by
    exact match, the share of elements equal to the source's: SNR means nothing for an index."""

    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    snr_db: float
    top1_agreement: float | None = None
    kind: str = "float"  # float | integer | bool
    exact_match: float | None = None  # integer / bool outputs
    nonfinite: int = 0  # NaN / Inf values in the converted model's output where the source's are finite
    aligned_by: str | None = None  # the top-k index output whose order this output was compared in (module docstring)
    ties: float | None = None  # a top-k index output: the share of picks that differed only by a tie at the cut-off
    top1_ties: float | None = None  # class scores: the share of samples whose top-1 differed only by a near tie (the
    # gate counts them as agreeing where the output meets its other bounds; top1_agreement is the plain share)

    def to_json(self) -> dict[str, float | str | None]:
        return {"name": self.name, "kind": self.kind, "snr_db": self.snr_db, "cosine": self.cosine,
                "max_abs": self.max_abs, "mean_abs": self.mean_abs, "top1_agreement": self.top1_agreement,
                "exact_match": self.exact_match, "nonfinite": self.nonfinite, "aligned_by": self.aligned_by,
                "ties": self.ties, "top1_ties": self.top1_ties}


@dataclass(frozen=True)
class Metrics:
    """Worst case over outputs plus the per-output detail. SNR / cosine / max abs are over the float outputs (all
    outputs when none is float); `exact_match` is the worst over integer and bool outputs."""

    snr_db: float
    cosine: float
    max_abs: float
    mean_abs: float
    top1_agreement: float | None
    outputs: tuple[OutputMetrics, ...] = ()
    samples: int = 0
    exact_match: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"snr_db": self.snr_db, "cosine": self.cosine, "max_abs": self.max_abs, "mean_abs": self.mean_abs,
                "top1_agreement": self.top1_agreement, "exact_match": self.exact_match, "samples": self.samples,
                "outputs": [o.to_json() for o in self.outputs]}


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    ref = reference.astype(np.float64).ravel()
    err = ref - actual.astype(np.float64).ravel()
    noise = float(np.dot(err, err))
    signal = float(np.dot(ref, ref))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(min(SNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def cosine(reference: np.ndarray, actual: np.ndarray) -> float:
    a = reference.astype(np.float64).ravel()
    b = actual.astype(np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def looks_like_class_scores(array: np.ndarray) -> bool:
    return array.ndim in (1, 2) and array.shape[-1] > 1 and array.dtype.kind == "f"


def output_kind(array: np.ndarray) -> str:
    kind = np.asarray(array).dtype.kind
    return "bool" if kind == "b" else "integer" if kind in "iu" else "float"


@dataclass(frozen=True)
class TopK:
    """A top-k post-process among a model's outputs (positions in the output list): `indices` the int picks,
    `values` the sorted values picked (same shape), `gathered` outputs whose leading dims are the picks' shape."""

    indices: int
    values: int
    gathered: tuple[int, ...] = ()


def _distinct_rows(array: np.ndarray) -> bool:
    rows = array.reshape(-1, array.shape[-1])
    return all(len(np.unique(row)) == len(row) for row in rows)


def _sorted_rows(array: np.ndarray) -> bool:
    rows = array.reshape(-1, array.shape[-1]).astype(np.float64)
    steps = np.diff(rows, axis=-1)
    return bool((steps <= 0).all() or (steps >= 0).all())


def find_topk(references: Sequence[Sequence[np.ndarray]]) -> list[TopK]:
    """The top-k post-processes in the source's outputs (every sample): an integer output of shape [..., k > 1] whose
    rows hold distinct values, beside a float output of the same shape whose rows are sorted in every sample."""
    first = [np.asarray(o) for o in references[0]]
    found = []
    for i, idx in enumerate(first):
        if output_kind(idx) != "integer" or idx.ndim < 1 or idx.shape[-1] < 2:
            continue
        if not all(_distinct_rows(np.asarray(sample[i])) for sample in references):
            continue
        values = next((j for j, v in enumerate(first) if j != i and output_kind(v) == "float" and v.shape == idx.shape
                       and all(_sorted_rows(np.asarray(sample[j])) for sample in references)), None)
        if values is None:
            continue
        gathered = tuple(j for j, g in enumerate(first) if j not in (i, values) and output_kind(g) == "float"
                         and g.ndim > idx.ndim and g.shape[:idx.ndim] == idx.shape)
        found.append(TopK(i, values, gathered))
    return found


def topk_alignment(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per row of k picks, the permutation of the actual's positions that puts the picks both made where the source
    has them; the actual's other picks fill the remaining positions in their order. Shape: reference's."""
    ref = reference.reshape(-1, reference.shape[-1])
    act = actual.reshape(-1, actual.shape[-1])
    perms = np.empty(ref.shape, dtype=np.int64)
    for r, (want, got) in enumerate(zip(ref, act)):
        where = {int(v): p for p, v in enumerate(got)}
        if len(where) != len(got):  # the converted model repeats a pick: no order to restore, compare by position
            perms[r] = np.arange(len(got))
            continue
        perm = [where.pop(int(v), -1) for v in want]
        rest = iter(sorted(where.values()))
        perms[r] = [p if p >= 0 else next(rest) for p in perm]
    return perms.reshape(reference.shape)


def topk_ties(ref_idx: np.ndarray, act_idx: np.ndarray, ref_values: np.ndarray, act_values: np.ndarray) -> np.ndarray:
    """Which of the source's picks the converted model left out only by a tie at the cut-off (bool, shape of the
    picks; act_* already aligned): its source value is within the noise of the converted model's last pick, the noise
    being the largest value error over the picks both made in that row. Nothing is a tie in a row with no common pick."""
    shape = ref_idx.shape
    ri, ai = ref_idx.reshape(-1, shape[-1]), act_idx.reshape(-1, shape[-1])
    rv, av = (v.reshape(-1, shape[-1]).astype(np.float64) for v in (ref_values, act_values))
    ties = np.zeros(ri.shape, dtype=bool)
    for r in range(len(ri)):
        common = ri[r] == ai[r]
        if not common.any() or common.all():
            continue
        noise = float(np.abs(rv[r][common] - av[r][common]).max())
        descending = rv[r][0] >= rv[r][-1]
        cut = float(av[r].min() if descending else av[r].max())  # the converted model's last pick
        near = rv[r] <= cut + noise if descending else rv[r] >= cut - noise
        ties[r] = ~common & near
    return ties.reshape(shape)


def top1_ties(reference: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of class scores ([N, C] or [C]): whether the top-1 agrees, and whether a differing top-1 is only a near
    tie: the source's margin between its pick and the converted model's is within what the conversion's noise can do
    to the difference of two scores, twice the largest error over the row's other classes (a keyword spotter's
    tflite-dynamic flip: margin 0.0105 of a 0.47 logit range, errors -0.0053 / +0.0055 on the pair, 0.0081 at most on
    the other classes). Nothing is a tie in a row with no other class (two-class scores)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, np.shape(reference)[-1])
    act = np.asarray(actual, dtype=np.float64).reshape(ref.shape)
    picked, got = ref.argmax(-1), act.argmax(-1)
    agree = picked == got
    ties = np.zeros(agree.shape, dtype=bool)
    for r in np.flatnonzero(~agree):
        others = np.ones(ref.shape[1], dtype=bool)
        others[[picked[r], got[r]]] = False
        if others.any():
            noise = float(np.abs(ref[r, others] - act[r, others]).max())
            ties[r] = ref[r, picked[r]] - ref[r, got[r]] <= 2.0 * noise
    return agree, ties


def _align(actual: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """`actual` (shape perm.shape + trailing dims) with its pick axis (perm's last) permuted row by row."""
    extra = actual.ndim - perm.ndim
    index = perm.reshape(perm.shape + (1,) * extra)
    return np.take_along_axis(actual, np.broadcast_to(index, perm.shape + actual.shape[perm.ndim:]), axis=perm.ndim - 1)


def align_topk(references: Sequence[Sequence[np.ndarray]], actuals: Sequence[Sequence[np.ndarray]],
               topks: Sequence[TopK]) -> tuple[list[list[np.ndarray]], dict[int, float]]:
    """The actuals with each top-k's picks (indices, values, gathered outputs) in the source's index order, and per
    index output the share of picks that were ties at the cut-off (topk_ties). A tied pick is not a conversion error:
    its positions take the source's values in every output. A pick only one side made is counted once, by the index
    output's exact match (its gate); the values and gathered outputs take the source's values there too, so they are
    judged on the picks both made (one other box in 320 picks took a detector's fp16 boxes from 70 to 25 dB)."""
    aligned = [[np.asarray(o) for o in sample] for sample in actuals]
    tied = {t.indices: 0 for t in topks}
    picks = {t.indices: 0 for t in topks}
    for ref, act in zip(references, aligned):
        for topk in topks:
            ref_idx = np.asarray(ref[topk.indices])
            if act[topk.indices].shape != ref_idx.shape or act[topk.values].shape != ref_idx.shape:
                continue  # a changed shape is reported by output_metrics
            perm = topk_alignment(ref_idx, act[topk.indices])
            for j in (topk.indices, topk.values, *topk.gathered):
                if act[j].shape[:perm.ndim] == perm.shape:
                    act[j] = _align(act[j], perm)
            ties = topk_ties(ref_idx, act[topk.indices], np.asarray(ref[topk.values]), act[topk.values])
            other = act[topk.indices] != ref_idx  # picks only one side made (ties among them)
            for j in (topk.indices, topk.values, *topk.gathered):
                mask = ties if j == topk.indices else other
                if act[j].shape[:mask.ndim] == mask.shape:
                    act[j] = act[j].copy()
                    act[j][mask] = np.asarray(ref[j])[mask]
            tied[topk.indices] += int(ties.sum())
            picks[topk.indices] += ties.size
    return aligned, {i: tied[i] / picks[i] for i in tied if picks[i]}


def _topk_fields(metrics: OutputMetrics, position: int, topks: Sequence[TopK], aligned_by: str | None,
                 ties: float | None) -> OutputMetrics:
    """A top-k's values are sorted picks, not class scores: no top-1 agreement for them."""
    if any(t.values == position for t in topks):
        return replace(metrics, aligned_by=aligned_by, ties=ties, top1_agreement=None, top1_ties=None)
    return replace(metrics, aligned_by=aligned_by, ties=ties)


def _finite(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return np.where(np.isfinite(array), array, 0.0)


def output_metrics(name: str, references: Sequence[np.ndarray], actuals: Sequence[np.ndarray]) -> OutputMetrics:
    ref = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1) for r in references])
    act = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in actuals])
    if ref.shape != act.shape:
        raise InvalidInputError(f"output {name}: converted model gives {act.size} values, source gives {ref.size}",
                                "the conversion changed the output shape")
    nonfinite = int(np.count_nonzero(~np.isfinite(act) & np.isfinite(ref)))
    if nonfinite:  # NaN would make SNR "identical" (min(300, nan) is 300) and argmax meaningless: score it as lost
        act = _finite(act)
    diff = np.abs(ref - act)
    kind = output_kind(np.asarray(references[0])) if references else "float"
    top1 = exact = tied = None
    if kind != "float":
        exact = float(np.mean(ref == act)) if ref.size else 1.0
    elif references and looks_like_class_scores(np.asarray(references[0])):
        rows = [top1_ties(np.asarray(r), _finite(a)) for r, a in zip(references, actuals)]
        agree, ties = (np.concatenate([row[k] for row in rows]) for k in (0, 1))
        top1, tied = float(np.mean(agree)), float(np.mean(ties))
    snr = -SNR_CAP_DB if nonfinite else snr_db(ref, act)
    return OutputMetrics(name, float(diff.max()) if diff.size else 0.0, float(diff.mean()) if diff.size else 0.0,
                         cosine(ref, act), snr, top1, kind, exact, nonfinite, top1_ties=tied)


def compare(names: Sequence[str], references: Iterable[Sequence[np.ndarray]], actuals: Iterable[Sequence[np.ndarray]]) -> Metrics:
    """`references`/`actuals`: per sample, the list of outputs in source order."""
    refs = list(references)
    acts: Sequence[Sequence[np.ndarray]] = list(actuals)
    if not refs:
        raise InvalidInputError("no samples to validate on", "pass --eval DIR or --calib DIR")
    n_out = len(refs[0])
    if any(len(a) != n_out for a in acts):
        raise InvalidInputError(f"the converted model has {len(acts[0])} outputs, the source {n_out}", "")
    names = list(names) + [f"output_{i}" for i in range(len(names), n_out)]
    topks = find_topk(refs)
    ties: dict[int, float] = {}
    if topks:
        acts, ties = align_topk(refs, acts, topks)
    aligned_by = {j: names[t.indices] for t in topks for j in (t.indices, t.values, *t.gathered)}
    per = tuple(_topk_fields(output_metrics(names[i], [r[i] for r in refs], [a[i] for a in acts]), i, topks,
                             aligned_by.get(i), ties.get(i)) for i in range(n_out))
    floats = [o for o in per if o.kind == "float"] or list(per)
    tops = [o.top1_agreement for o in per if o.top1_agreement is not None]
    exact = [o.exact_match for o in per if o.exact_match is not None]
    return Metrics(
        snr_db=min(o.snr_db for o in floats), cosine=min(o.cosine for o in floats),
        max_abs=max(o.max_abs for o in floats), mean_abs=max(o.mean_abs for o in floats),
        top1_agreement=min(tops) if tops else None, outputs=per, samples=len(refs), exact_match=min(exact) if exact else None,
    )


def check_source_outputs(outputs: Sequence[np.ndarray], sample_index: int) -> None:
    for i, out in enumerate(outputs):
        if np.asarray(out).dtype.kind == "f" and not np.isfinite(out).all():
            raise InvalidInputError(f"the source model produces NaN/Inf on sample {sample_index} (output {i})",
                                    "check the samples' scale and preprocessing; nothing can be validated against NaN")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    failures: tuple[str, ...] = field(default_factory=tuple)


def check_gate(metrics: Metrics, gate: Gate) -> GateResult:
    """Every bound that is set must hold for every output it applies to; a failure names the output (when there are
    several). Integer / bool outputs are held to `min_exact_match`, or, when the gate sets none, to the top-1 bound
    (the same question: does the converted model pick the same thing). The top-1 bound counts an output's near ties
    (top1_ties) as agreeing only when that output meets every other bound: a broken model's noise makes every flip
    look like a tie (an int8 audio model at -3.5 dB had 28 of 32)."""
    failures: list[str] = []
    outputs = metrics.outputs or (OutputMetrics("output", metrics.max_abs, metrics.mean_abs, metrics.cosine,
                                                metrics.snr_db, metrics.top1_agreement),)
    exact_bound = gate.min_exact_match if gate.min_exact_match is not None else gate.min_top1_agreement
    for out in outputs:
        where = f"output {out.name}: " if len(outputs) > 1 else ""
        before = len(failures)
        if out.nonfinite:
            failures.append(f"{where}{out.nonfinite} NaN/Inf value(s) where the source's are finite")
        if out.kind != "float":
            if exact_bound is not None and out.exact_match is not None and out.exact_match < exact_bound:
                failures.append(f"{where}exact match {out.exact_match:.3f} < {exact_bound} ({out.kind} output)")
            continue
        if gate.min_snr_db is not None and out.snr_db < gate.min_snr_db:
            failures.append(f"{where}SNR {out.snr_db:.1f} dB < {gate.min_snr_db} dB")
        if gate.min_cosine is not None and out.cosine < gate.min_cosine:
            failures.append(f"{where}cosine {out.cosine:.6f} < {gate.min_cosine}")
        if gate.max_abs is not None and out.max_abs > gate.max_abs:
            failures.append(f"{where}max abs error {out.max_abs:.3g} > {gate.max_abs}")
        if gate.min_top1_agreement is not None and out.top1_agreement is not None:
            within = len(failures) == before  # near ties count only where the output meets every other bound
            ties = (out.top1_ties or 0.0) if within else 0.0
            if out.top1_agreement + ties < gate.min_top1_agreement:
                counted = f" (+{ties:.3f} near ties)" if ties else ""
                failures.append(f"{where}top-1 agreement {out.top1_agreement:.3f}{counted} < {gate.min_top1_agreement}")
    return GateResult(not failures, tuple(failures))
