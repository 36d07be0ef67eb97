"""The coreml / ane profiles' `[compiler]` keys (coremltools conversion settings), typed and checked when the profile
loads. `minimum_deployment_target` is checked against coremltools' own list when the converter runs (it needs
coremltools imported).

CLI flags of this family (ConvertOptions carries them): `--allow-cpu-fallback` (accept a program whose compute ops stay
below `min_neural_engine_share` on the Neural Engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeconv.targets.family_options import option, options_for

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

FAMILY = "coreml"
CLI_OPTIONS = ("--allow-cpu-fallback",)
COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
IO_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class CoreMlOptions:
    compute_precision: str | None = None  # float32 | float16 (any case); None: float16 when quantized, else float32
    minimum_deployment_target: str = "iOS17"  # a coremltools ct.target name: iOS16, iOS17, iOS18, macOS13...
    compute_units: str = option("ALL", choices=COMPUTE_UNITS)  # stored in the manifest; used when the model loads
    io_dtype: str = option("float32", choices=IO_DTYPES)  # dtype of the model's inputs / outputs
    min_neural_engine_share: float = option(0.8, bounds=(0.0, 1.0))  # CPU_AND_NE: share of compute ops on the ANE

    def precision_for(self, quantize_precision: str) -> str:
        """compute_precision, else float16 for a quantized profile (`[quantize] precision`), float32 for an fp32 one."""
        return self.compute_precision or ("float16" if quantize_precision != "fp32" else "float32")


OPTIONS = CoreMlOptions


def parse(profile: "Profile") -> CoreMlOptions:
    return options_for(profile)
