"""Optional backends: import lazily, fail with the pip extra that installs them, report versions."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from types import ModuleType

from edgeconv.errors import MissingBackendError

# distribution name -> (import name, pip extra): the backends every route shares. A target family's own backends are
# declared in its folder's __init__.py (`BACKENDS`, `EXTRA`) and listed after these by backend_table().
CORE_BACKENDS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "core"),
    "onnxruntime": ("onnxruntime", "core"),
    "onnxslim": ("onnxslim", "core"),
    "torch": ("torch", "torch"),
    "onnxscript": ("onnxscript", "torch"),
    "tensorflow": ("tensorflow", "tf"),
    "keras": ("keras", "tf"),
    "tf_keras": ("tf_keras", "tf"),
    "tf2onnx": ("tf2onnx", "tf"),
}
BASE_PACKAGES: dict[str, tuple[str, str]] = {"numpy": ("numpy", "core"), "protobuf": ("google.protobuf", "core")}


@lru_cache(maxsize=1)
def backend_table() -> dict[str, tuple[str, str]]:
    """distribution -> (import name, pip extra) for every backend edgeconv wraps (used by `doctor` and the manifest):
    the core ones, each target family's (targets/<family>/__init__.py BACKENDS and EXTRA), then numpy and protobuf."""
    import pkgutil

    import edgeconv.targets as families

    table = dict(CORE_BACKENDS)
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda i: i.name):
        if info.ispkg:
            family = importlib.import_module(f"{families.__name__}.{info.name}")
            for dist, module in getattr(family, "BACKENDS", {}).items():
                table.setdefault(dist, (module, getattr(family, "EXTRA", info.name)))
    table.update(BASE_PACKAGES)
    return table



@lru_cache(maxsize=None)
def is_installed(module: str) -> bool:
    """True if `module` can be imported, without importing it (asked hundreds of times by `edgeconv targets`: cached
    for the life of the process)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, *, purpose: str = "") -> ModuleType:
    """Import `module` or raise MissingBackendError (exit 4) naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingBackendError(
            f"the optional backend '{module}' is not installed{what}: {e}",
            f"pip install 'edgeconv[{extra}]'",
        ) from e


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_versions(distributions: list[str] | None = None) -> dict[str, str]:
    """Versions of the installed backends (absent ones left out). Cheap: reads package metadata only."""
    names = distributions if distributions is not None else list(backend_table())
    out = {}
    for name in names:
        v = version_of(name)
        if v is not None:
            out[name] = v
    return out
