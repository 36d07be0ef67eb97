"""Optional backends: import lazily, fail with the pip extra that installs them, report versions."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from types import ModuleType

from edgeconv.errors import MissingBackendError

# distribution name -> import name, for the backends edgeconv wraps (used by `doctor` and the manifest).
BACKENDS: dict[str, str] = {
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxslim": "onnxslim",
    "torch": "torch",
    "onnxscript": "onnxscript",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "tf_keras": "tf_keras",
    "tf2onnx": "tf2onnx",
    "onnx2tf": "onnx2tf",
    "ai-edge-litert": "ai_edge_litert",
    "coremltools": "coremltools",
    "onnxruntime-qnn": "onnxruntime_qnn",
    "tensorrt": "tensorrt",
    "openvino": "openvino",
    "nncf": "nncf",
    "executorch": "executorch",
    "torchao": "torchao",
    "numpy": "numpy",
    "protobuf": "google.protobuf",
}


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
    names = distributions if distributions is not None else list(BACKENDS)
    out = {}
    for name in names:
        v = version_of(name)
        if v is not None:
            out[name] = v
    return out
