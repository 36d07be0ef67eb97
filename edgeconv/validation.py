"""Numbers that say whether a converted model still computes what the source did, and the gates they must pass.

Per output: max / mean absolute error, cosine similarity, SNR in dB (capped at 300 dB, i.e. identical to float32
precision) and, when the output looks like class scores ([N, C] or [C] with C > 1), top-1 agreement. Integer and
bool outputs (indices, masks) are judged by exact match instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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

    def to_json(self) -> dict[str, float | str | None]:
        return {"name": self.name, "kind": self.kind, "snr_db": self.snr_db, "cosine": self.cosine,
                "max_abs": self.max_abs, "mean_abs": self.mean_abs, "top1_agreement": self.top1_agreement,
                "exact_match": self.exact_match, "nonfinite": self.nonfinite}


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


def output_metrics(name: str, references: Sequence[np.ndarray], actuals: Sequence[np.ndarray]) -> OutputMetrics:
    ref = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1) for r in references])
    act = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in actuals])
    if ref.shape != act.shape:
        raise InvalidInputError(f"output {name}: converted model gives {act.size} values, source gives {ref.size}",
                                "the conversion changed the output shape")
    nonfinite = int(np.count_nonzero(~np.isfinite(act) & np.isfinite(ref)))
    if nonfinite:  # NaN would make SNR "identical" (min(300, nan) is 300) and argmax meaningless: score it as lost
        act = np.where(np.isfinite(act), act, 0.0)
    diff = np.abs(ref - act)
    kind = output_kind(np.asarray(references[0])) if references else "float"
    top1 = exact = None
    if kind != "float":
        exact = float(np.mean(ref == act)) if ref.size else 1.0
    elif references and looks_like_class_scores(np.asarray(references[0])):
        agree = [np.argmax(np.asarray(r), axis=-1) == np.argmax(np.asarray(a), axis=-1) for r, a in zip(references, actuals)]
        top1 = float(np.mean(np.concatenate([np.atleast_1d(x) for x in agree])))
    snr = -SNR_CAP_DB if nonfinite else snr_db(ref, act)
    return OutputMetrics(name, float(diff.max()) if diff.size else 0.0, float(diff.mean()) if diff.size else 0.0,
                         cosine(ref, act), snr, top1, kind, exact, nonfinite)


def compare(names: Sequence[str], references: Iterable[Sequence[np.ndarray]], actuals: Iterable[Sequence[np.ndarray]]) -> Metrics:
    """`references`/`actuals`: per sample, the list of outputs in source order."""
    refs, acts = list(references), list(actuals)
    if not refs:
        raise InvalidInputError("no samples to validate on", "pass --eval DIR or --calib DIR")
    n_out = len(refs[0])
    if any(len(a) != n_out for a in acts):
        raise InvalidInputError(f"the converted model has {len(acts[0])} outputs, the source {n_out}", "")
    names = list(names) + [f"output_{i}" for i in range(len(names), n_out)]
    per = tuple(output_metrics(names[i], [r[i] for r in refs], [a[i] for a in acts]) for i in range(n_out))
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
    (the same question: does the converted model pick the same thing)."""
    failures: list[str] = []
    outputs = metrics.outputs or (OutputMetrics("output", metrics.max_abs, metrics.mean_abs, metrics.cosine,
                                                metrics.snr_db, metrics.top1_agreement),)
    exact_bound = gate.min_exact_match if gate.min_exact_match is not None else gate.min_top1_agreement
    for out in outputs:
        where = f"output {out.name}: " if len(outputs) > 1 else ""
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
        if gate.min_top1_agreement is not None and out.top1_agreement is not None and out.top1_agreement < gate.min_top1_agreement:
            failures.append(f"{where}top-1 agreement {out.top1_agreement:.3f} < {gate.min_top1_agreement}")
    return GateResult(not failures, tuple(failures))
