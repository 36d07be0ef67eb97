"""The Runtime interface: load an artifact, run it on feeds keyed by the SOURCE model's input names and layout, return
outputs in the source model's output order. Runtimes hide layout transposes and int8 I/O (de)quantization."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from edgeconv.deps import is_installed
from edgeconv.formats import Artifact, Format, TensorSpec

if TYPE_CHECKING:
    from edgeconv.context import StepContext


class Session(ABC):
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the source model's output order."""


@dataclass(frozen=True)
class StructuralCheck:
    """What a runtime that cannot execute here (Core ML on Linux) verified instead."""

    passed: bool
    checks: dict[str, object] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


class Runtime(ABC):
    name: ClassVar[str] = ""
    formats: ClassVar[frozenset[Format]] = frozenset()
    extra: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    runs_sources: ClassVar[bool] = False  # True for the framework runtimes that run source models
    # what progress lines and result rows add to the stand-in runtime's name when this runtime's artifact was not
    # built and its input was validated instead ("onnxruntime (engine not built)")
    stand_in_label: ClassVar[str] = ""

    @classmethod
    def available(cls) -> bool:
        return all(is_installed(m) for m in cls.requires)

    @classmethod
    def can_execute_here(cls) -> str | None:
        """None if models can be executed on this machine, else why not (then `check_structure` is used)."""
        return None

    @classmethod
    def fallback_here(cls) -> str | None:
        """None, or what the target does instead on this machine when its own artifact cannot be built or run here but
        a stand-in is validated numerically (TensorRT without a GPU: the TensorRT-ready ONNX on ONNX Runtime)."""
        return None

    @abstractmethod
    def load(self, artifact: Artifact, ctx: "StepContext") -> Session:
        """Load the artifact for execution."""

    def check_structure(self, artifact: Artifact, ctx: "StepContext") -> StructuralCheck:
        raise NotImplementedError(f"{self.name} has no structural check")
