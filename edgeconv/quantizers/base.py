"""The Quantizer interface: ONNX in, ONNX out, driven by the profile's [quantize] section."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from edgeconv.deps import is_installed
from edgeconv.formats import Artifact

if TYPE_CHECKING:
    from edgeconv.context import StepContext


class Quantizer(ABC):
    name: ClassVar[str] = ""
    precisions: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[tuple[str, ...]] = ()
    needs_calibration: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # stage cache (stage_cache.py), keyed by the whole profile, options and data

    @classmethod
    def available(cls) -> bool:
        return all(is_installed(m) for m in cls.requires)

    @abstractmethod
    def quantize(self, artifact: Artifact, ctx: "StepContext") -> Artifact:
        """Write the quantized model into ctx.work_dir and return it. What the target's later stages read goes into
        ctx.quantized (context.QuantizeResult); what only the manifest shows, into ctx.notes["quantize"]."""
