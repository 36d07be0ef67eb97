"""Numbers that say whether a converted model still computes what the source did, and the gates they must pass.

Per output: max / mean absolute error, cosine similarity, SNR in dB (capped at 300 dB, i.e. identical to float32
precision) and, when the output looks like class scores ([N, C] or [C] with C > 1), top-1 agreement.
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
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    snr_db: float
    top1_agreement: float | None = None

    def to_json(self) -> dict[str, float | str | None]:
        return {"name": self.name, "snr_db": self.snr_db, "cosine": self.cosine, "max_abs": self.max_abs,
                "mean_abs": self.mean_abs, "top1_agreement": self.top1_agreement}


@dataclass(frozen=True)
class Metrics:
    """Worst case over outputs (what the gate reads) plus the per-output detail."""

    snr_db: float
    cosine: float
    max_abs: float
    mean_abs: float
    top1_agreement: float | None
    outputs: tuple[OutputMetrics, ...] = ()
    samples: int = 0

    def to_json(self) -> dict[str, object]:
        return {"snr_db": self.snr_db, "cosine": self.cosine, "max_abs": self.max_abs, "mean_abs": self.mean_abs,
                "top1_agreement": self.top1_agreement, "samples": self.samples,
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


def output_metrics(name: str, references: Sequence[np.ndarray], actuals: Sequence[np.ndarray]) -> OutputMetrics:
    ref = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1) for r in references])
    act = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in actuals])
    if ref.shape != act.shape:
        raise InvalidInputError(f"output {name}: converted model gives {act.size} values, source gives {ref.size}",
                                "the conversion changed the output shape")
    diff = np.abs(ref - act)
    top1 = None
    if references and looks_like_class_scores(np.asarray(references[0])):
        agree = [np.argmax(np.asarray(r), axis=-1) == np.argmax(np.asarray(a), axis=-1) for r, a in zip(references, actuals)]
        top1 = float(np.mean(np.concatenate([np.atleast_1d(x) for x in agree])))
    return OutputMetrics(name, float(diff.max()) if diff.size else 0.0, float(diff.mean()) if diff.size else 0.0,
                         cosine(ref, act), snr_db(ref, act), top1)


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
    tops = [o.top1_agreement for o in per if o.top1_agreement is not None]
    return Metrics(
        snr_db=min(o.snr_db for o in per), cosine=min(o.cosine for o in per), max_abs=max(o.max_abs for o in per),
        mean_abs=max(o.mean_abs for o in per), top1_agreement=min(tops) if tops else None, outputs=per, samples=len(refs),
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
    failures = []
    if gate.min_snr_db is not None and metrics.snr_db < gate.min_snr_db:
        failures.append(f"SNR {metrics.snr_db:.1f} dB < {gate.min_snr_db} dB")
    if gate.min_cosine is not None and metrics.cosine < gate.min_cosine:
        failures.append(f"cosine {metrics.cosine:.6f} < {gate.min_cosine}")
    if gate.max_abs is not None and metrics.max_abs > gate.max_abs:
        failures.append(f"max abs error {metrics.max_abs:.3g} > {gate.max_abs}")
    if gate.min_top1_agreement is not None and metrics.top1_agreement is not None and metrics.top1_agreement < gate.min_top1_agreement:
        failures.append(f"top-1 agreement {metrics.top1_agreement:.3f} < {gate.min_top1_agreement}")
    return GateResult(not failures, tuple(failures))
