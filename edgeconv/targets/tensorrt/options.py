"""The tensorrt profiles' `[compiler]` keys (TensorRT builder settings), typed and checked when the profile loads.

CLI flags of this family (ConvertOptions carries them): `--shape-range` (optimisation profile of a dynamic input) and
`--require-engine` (exit 4 when no GPU can build the engine here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeconv.targets.family_options import option, options_for

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

FAMILY = "tensorrt"
CLI_OPTIONS = ("--shape-range", "--require-engine")


@dataclass(frozen=True)
class TensorRtOptions:
    workspace_mib: int = option(1024, bounds=(1, 1 << 20))  # builder workspace memory pool
    optimization_level: int | None = option(None, bounds=(0, 5))  # None: TensorRT's default (3)
    tf32: bool | None = None  # false: float32 layers compute in true fp32, not TF32; None: TensorRT's default


OPTIONS = TensorRtOptions


def parse(profile: "Profile") -> TensorRtOptions:
    return options_for(profile)
