"""The executorch profiles' `[compiler]` keys, typed: an unknown or mistyped key is exit 2 (naming key, file and line)
when the profile loads (targets/family_options.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeconv.targets.family_options import option, options_for

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

FAMILY = "executorch"
DELEGATES = ("xnnpack", "none")


@dataclass(frozen=True)
class ExecuTorchOptions:
    # the backend the graph is lowered to ("none": portable CPU kernels only)
    delegate: str = option("xnnpack", choices=DELEGATES)
    per_channel: bool = True  # int8: XNNPACKQuantizer symmetric per-channel weights (else per-tensor)
    min_delegated: float = option(0.0, bounds=(0.0, 1.0))  # fail (exit 4) when XNNPACK takes less of the graph's nodes


OPTIONS = ExecuTorchOptions


def parse(profile: "Profile") -> ExecuTorchOptions:
    return options_for(profile)
