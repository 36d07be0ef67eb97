"""Automatic registration: every module in a plugin package is imported, every subclass of the base that sets `name`
is registered. Modules must keep heavy imports inside functions, so discovery stays fast."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")


def _subclasses(cls: type[object]) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


# Target family folders (targets/<family>/: its converters, runtime, options and profiles.toml together) are plugin
# packages too: discover() looks in them for every kind of plugin.
FAMILIES = "edgeconv.targets"


@lru_cache(maxsize=None)
def _import_package(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):  # into subpackages: targets/<family>/
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def discover(package: str, base: type[T]) -> list[type[T]]:
    """All concrete plugins of `base` defined in `package` or in a target family folder, sorted by name."""
    _import_package(package)
    _import_package(FAMILIES)
    found = [c for c in _subclasses(base)
             if getattr(c, "name", "") and c.__module__.startswith((package + ".", FAMILIES + "."))]
    names = [c.name for c in found]  # type: ignore[attr-defined]  # T is unbound: every plugin base declares `name`
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate plugin names in {package}: {sorted(dupes)}")
    return sorted(found, key=lambda c: c.name)  # type: ignore[attr-defined]  # as above
