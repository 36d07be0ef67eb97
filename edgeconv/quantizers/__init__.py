"""Quantizers applied on the hub format (ONNX) by precision; calibration data sources live in calibration.py."""

from __future__ import annotations

from edgeconv.errors import UnsupportedError
from edgeconv.quantizers.base import Quantizer
from edgeconv.registry import discover


def all_quantizers() -> list[type[Quantizer]]:
    return discover("edgeconv.quantizers", Quantizer)  # type: ignore[type-abstract]  # only its subclasses are used


def quantizer_for(precision: str) -> type[Quantizer]:
    for q in all_quantizers():
        if precision in q.precisions:
            return q
    known = sorted({p for q in all_quantizers() for p in q.precisions})
    raise UnsupportedError(f"no ONNX quantizer for precision '{precision}'", f"ONNX quantizers handle: {', '.join(known)}")
