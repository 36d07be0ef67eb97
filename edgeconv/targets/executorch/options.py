"""The executorch profiles' `[compiler]` keys, typed: an unknown or mistyped key is exit 2 while the plan is built."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from edgeconv.errors import UsageError

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile


@dataclass(frozen=True)
class ExecuTorchOptions:
    delegate: str = "xnnpack"  # the backend the graph is lowered to ("none": portable CPU kernels only)
    per_channel: bool = True  # int8: XNNPACKQuantizer symmetric per-channel weights (else per-tensor)
    min_delegated: float = 0.0  # fail (exit 4) when XNNPACK takes less than this share of the graph's nodes


DELEGATES = ("xnnpack", "none")


def parse(profile: "Profile") -> ExecuTorchOptions:
    allowed = {f.name for f in fields(ExecuTorchOptions)}
    kwargs: dict[str, Any] = {}
    where = f"{profile.source_file or profile.name}: [compiler]"
    for key, value in profile.compiler.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            raise UsageError(f"{where} {key} of '{profile.name}' is not an ExecuTorch option",
                             (f"did you mean '{close[0]}'? " if close else "") + f"allowed: {', '.join(sorted(allowed))}")
        default = getattr(ExecuTorchOptions, key)
        ok = isinstance(value, bool) if isinstance(default, bool) else \
            isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float) else \
            isinstance(value, str)
        if not ok:
            raise UsageError(f"{where} {key} = {value!r} of '{profile.name}' must be a {type(default).__name__}",
                             "see docs/targets/executorch.md")
        kwargs[key] = value
    options = ExecuTorchOptions(**kwargs)
    if options.delegate not in DELEGATES:
        raise UsageError(f"{where} delegate = {options.delegate!r} of '{profile.name}' is not one of "
                         f"{', '.join(DELEGATES)}", "see docs/targets/executorch.md")
    return options
