"""Runners with one interface (load → Session.run(feeds) → outputs). Registration is automatic: see registry.py."""

from __future__ import annotations

import difflib

from edgeconv.errors import UsageError
from edgeconv.formats import Format
from edgeconv.registry import discover
from edgeconv.runtimes.base import Runtime


def all_runtimes() -> list[type[Runtime]]:
    return discover("edgeconv.runtimes", Runtime)  # type: ignore[type-abstract]  # only its subclasses are used


def runtime_named(name: str) -> type[Runtime]:
    runtimes = {r.name: r for r in all_runtimes()}
    if name not in runtimes:
        close = difflib.get_close_matches(name, list(runtimes), n=2)
        raise UsageError(f"unknown runtime '{name}'", f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(runtimes)}")
    return runtimes[name]


def runtime_for_source(fmt: Format) -> type[Runtime]:
    """The framework runtime that runs a source model of this format (torch, tensorflow, onnxruntime)."""
    for runtime in all_runtimes():
        if fmt in runtime.formats and runtime.runs_sources:
            return runtime
    raise UsageError(f"no runtime can run {fmt} sources", "this is a bug: please report it")
