"""TensorRT (NVIDIA GPU): runs serialized engines built by onnx_to_tensorrt / `edgeconv build-engine`.

Only where an NVIDIA GPU and the `tensorrt` package exist. Elsewhere a TensorRT target's engine is "not built", and the
validate stage checks the TensorRT-ready ONNX on ONNX Runtime instead (the record names the runtime that ran).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes.base import Runtime, Session, StructuralCheck


class TensorRTSession(Session):
    def __init__(self, runner: Any, output_order: tuple[str, ...]):
        self.runner = runner
        self.inputs = runner.inputs()
        names = tuple(runner.output_names)
        self.output_names = output_order if output_order and set(output_order) <= set(names) else names
        self._engine_order = names

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = dict(zip(self._engine_order, self.runner.run({s.name: feeds[s.name] for s in self.inputs})))
        return [outputs[n] for n in self.output_names]


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    formats = frozenset({Format.TENSORRT_ENGINE})
    extra = "tensorrt"
    requires = ("tensorrt",)
    stand_in_label = "engine not built"

    @classmethod
    def fallback_here(cls) -> str | None:
        """For `edgeconv targets`: what a tensorrt-* target does on this machine when no engine can be built."""
        from edgeconv.targets.tensorrt._tools import why_no_engine

        why = why_no_engine()
        return f"engine not built here ({why}); the TensorRT-ready ONNX is validated on ONNX Runtime" if why else None

    @classmethod
    def can_execute_here(cls) -> str | None:
        from edgeconv.targets.tensorrt._tools import why_no_engine

        return why_no_engine()

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        from edgeconv.targets.tensorrt._engine import EngineRunner

        return TensorRTSession(EngineRunner(artifact.path), tuple(ctx.source.output_names or ()))

    def check_structure(self, artifact: Artifact, ctx: StepContext) -> StructuralCheck:
        """An engine is GPU code for one GPU model and TensorRT version: nothing meaningful can be checked on a CPU."""
        from edgeconv.targets.tensorrt._tools import INSTALL_HINT, why_no_engine

        raise UnsupportedError(f"cannot validate the TensorRT engine {artifact.path.name} here: {why_no_engine()}",
                               f"validate it on the GPU machine that built it ({INSTALL_HINT})")
