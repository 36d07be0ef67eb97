"""Automatic registration: every module in a plugin package is imported, every subclass of the base that sets `name`
is registered. Modules must keep heavy imports inside functions, so discovery stays fast."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


@lru_cache(maxsize=None)
def _import_package(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def discover(package: str, base: type[T]) -> list[type[T]]:
    """All concrete plugins of `base` defined in `package`, sorted by name."""
    _import_package(package)
    found = [c for c in _subclasses(base) if getattr(c, "name", "") and c.__module__.startswith(package + ".")]
    names = [c.name for c in found]  # type: ignore[attr-defined]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate plugin names in {package}: {sorted(dupes)}")
    return sorted(found, key=lambda c: c.name)  # type: ignore[attr-defined]
