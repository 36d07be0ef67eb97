"""Is a target usable on this machine? (installed backends only; cheap: nothing heavy is imported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeconv.converters import all_converters
from edgeconv.formats import Artifact, Format
from edgeconv.routes import installed_route
from edgeconv.runtimes import all_runtimes
from edgeconv.targets.schema import Profile


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str = ""  # what is missing, with the pip extra
    validation: str = "numerical"  # numerical | structural | partial (a stand-in is validated) | none


def _route_available(src: Format, dst: Format, profile: Profile) -> tuple[bool, str]:
    """Is there a chain of installed converters src → dst that takes this profile (routes.installed_route, the search
    `convert` and `--dry-run` use)? Else name the extras that would make one."""
    if installed_route(src, dst, profile) is not None:
        return True, ""
    convs = all_converters()
    model = Artifact(Path("model"), src)
    refused = sorted({why for c in convs if c.target == dst and c.available() and (why := c().refuses(model, profile))})
    if refused:
        return False, "; ".join(refused)
    extras = sorted({c.extra for c in convs if c.target == dst and not c.available() and c.extra})
    return False, f"pip install 'edgeconv[{','.join(extras)}]'" if extras else f"no converter produces {dst}"


SOURCE_FORMATS = (Format.ONNX, Format.TORCH, Format.KERAS, Format.SAVEDMODEL)


def availability(profile: Profile) -> Availability:
    """Usable here if every format it produces can be reached from some source format with installed converters
    (Core ML, say, has no ONNX front end but takes PyTorch and Keras) and its validation runtime is installed."""
    for fmt in profile.produces:
        reachable, why = _route_available(SOURCE_FORMATS[0], fmt, profile)
        if not reachable and not any(_route_available(src, fmt, profile)[0] for src in SOURCE_FORMATS[1:]):
            return Availability(False, why)
    runtimes = {r.name: r for r in all_runtimes()}
    runtime = runtimes.get(profile.validate.runtime)
    if runtime is None:
        return Availability(False, f"unknown validation runtime {profile.validate.runtime}", "none")
    why_fallback = runtime.fallback_here()  # tensorrt: no GPU → engine not built, its ONNX validated on ORT
    if why_fallback:
        return Availability(True, why_fallback, "partial")
    if not runtime.available():
        return Availability(False, f"validation needs pip install 'edgeconv[{runtime.extra}]'", "none")
    why_not = runtime.can_execute_here()
    if why_not:
        return Availability(True, why_not, "structural")
    return Availability(True)
