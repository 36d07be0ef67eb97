"""Load order of native libraries that cannot share a process in the other order.

TensorFlow loaded after the QNN execution provider has loaded Qualcomm's HTP libraries crashes the process (SIGSEGV in
its RE2-based regex op, e.g. while onnx2tf saves its SavedModel): `convert model.onnx -t hexagon-int8 -t tflite-int8`
died with exit 139. Loaded before them, both work. So a run whose plan uses the QNN EP and anything that imports
TensorFlow (onnx2tf, tf2onnx, coremltools, TensorFlow itself) imports TensorFlow before its first step. Runs that
need only one of the two pay nothing.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from edgeconv.deps import is_installed

if TYPE_CHECKING:
    from edgeconv.pipeline import Plan

log = logging.getLogger(__name__)
QNN_MODULES = frozenset({"onnxruntime_qnn"})
IMPORTS_TENSORFLOW = frozenset({"tensorflow", "tf2onnx", "onnx2tf", "coremltools", "keras"})


def modules_of(plan: "Plan") -> set[str]:
    """Every module the plan's converters and validation runtimes need."""
    from edgeconv.runtimes import runtime_named

    modules: set[str] = set()
    for target in plan.targets:
        for step in target.steps:
            if step.converter is not None:
                modules.update(step.converter.requires)
        modules.update(runtime_named(target.profile.validate.runtime).requires)
    return modules


def needs_tensorflow_first(modules: set[str]) -> bool:
    return bool(modules & QNN_MODULES) and bool(modules & IMPORTS_TENSORFLOW) and is_installed("tensorflow")


def load_in_safe_order(plan: "Plan") -> bool:
    """Import TensorFlow now if the plan will load both the QNN EP and TensorFlow; True if it did."""
    if not needs_tensorflow_first(modules_of(plan)):
        return False
    log.debug("importing TensorFlow before the QNN execution provider loads its libraries (see native_libs.py)")
    importlib.import_module("tensorflow")
    return True
