"""The Converter interface: one edge of the format graph (e.g. torch → onnx, onnx → tflite)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from edgeconv.deps import is_installed
from edgeconv.formats import Artifact, Format

if TYPE_CHECKING:
    from edgeconv.context import StepContext
    from edgeconv.targets.schema import Profile


class Converter(ABC):
    name: ClassVar[str] = ""
    source: ClassVar[Format]
    target: ClassVar[Format]
    extra: ClassVar[str] = ""  # the pip extra that installs its backend: pip install 'edgeconv[<extra>]'
    requires: ClassVar[tuple[str, ...]] = ()  # import names that must be installed
    cost: ClassVar[int] = 10  # route search prefers cheaper (more faithful) edges
    stage: ClassVar[str] = "export"  # "export" (into the hub) or "compile" (for the target)
    # A documented dead end (an edge that exists to explain a refusal): route search may reach it, and planning then stops with exit 4 and
    # this reason + hint (also under --dry-run) instead of a bare "no route".
    unsupported_reason: ClassVar[str] = ""
    unsupported_hint: ClassVar[str] = ""
    # The stage cache (stage_cache.py) reuses this edge's output from an earlier run when its input, the settings it
    # reads and the tools are unchanged. Settings hashed by default: the whole profile but its [validate] section, all
    # options, and the calibration / evaluation data by content. An edge that reads less may name what it reads (the
    # Profile fields, the ConvertOptions fields); one whose output depends on the machine opts out (cacheable = False).
    cacheable: ClassVar[bool] = True
    cache_profile_keys: ClassVar[tuple[str, ...] | None] = None
    cache_option_keys: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def available(cls) -> bool:
        return all(is_installed(m) for m in cls.requires)

    def refuses(self, artifact: Artifact, profile: "Profile") -> str | None:
        """A reason this edge cannot take this artifact for this profile, or None. Used by route search."""
        return None

    @abstractmethod
    def convert(self, artifact: Artifact, ctx: "StepContext") -> Artifact:
        """Write the converted model into ctx.work_dir and return it."""
