"""Converter edges, one module per edge (src_to_dst.py). Registration is automatic: see registry.py."""

from __future__ import annotations

from edgeconv.converters.base import Converter
from edgeconv.registry import discover


def all_converters() -> list[type[Converter]]:
    return discover("edgeconv.converters", Converter)  # type: ignore[type-abstract]  # only its subclasses are used
