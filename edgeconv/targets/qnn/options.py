"""The hexagon profiles' `[compiler]` keys, typed and checked when the profile loads: `soc` picks the Snapdragon part
(when --soc is not given); the others are QNN execution provider options, passed to the HTP compiler as given (only
the keys the profile sets; edgeconv sets backend_type, soc_model, htp_arch and offload_graph_io_quantization itself).

CLI flags of this family (ConvertOptions carries them): `--soc` (the part, over `compiler.soc`) and
`--allow-cpu-fallback` (accept nodes the HTP would not take)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from edgeconv.targets.family_options import option, options_for
from edgeconv.targets.qnn.socs import DEFAULT_SOC

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

FAMILY = "hexagon"
CLI_OPTIONS = ("--soc", "--allow-cpu-fallback")
# the QNN EP's htp_performance_mode values
PERFORMANCE_MODES = ("burst", "balanced", "default", "high_performance", "high_power_saver", "low_balanced",
                     "low_power_saver", "power_saver", "extreme_power_saver", "sustained_high_performance")


@dataclass(frozen=True)
class HexagonOptions:
    soc: str = DEFAULT_SOC  # the part compiled for without --soc (qnn/socs.py names)
    htp_performance_mode: str | None = option(None, choices=PERFORMANCE_MODES)
    htp_graph_finalization_optimization_mode: int | None = option(None, bounds=(0, 3))  # 3: longer compile, better graph
    vtcm_mb: int | None = option(None, bounds=(0, None))  # VTCM the graph may use; None: the part's whole VTCM

    def provider_options(self) -> dict[str, Any]:
        """The QNN EP provider options the profile sets (all but `soc`), in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "soc" and getattr(self, f.name) is not None}


OPTIONS = HexagonOptions


def parse(profile: "Profile") -> HexagonOptions:
    return options_for(profile)
