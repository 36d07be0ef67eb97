"""The openvino profiles' `[compiler]` keys, typed: an unknown or mistyped key is a usage error (exit 2) naming it and
the profile file, raised while the plan is built (also under --dry-run), before any conversion work."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from edgeconv.errors import UsageError

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

PRESETS = ("performance", "mixed")  # NNCF QuantizationPreset: symmetric / asymmetric activations
MODEL_TYPES = ("auto", "cnn", "transformer")  # auto: transformer when the graph has MatMul + Softmax
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
WEIGHT_MODES = ("int8_asym", "int8_sym")
FALLBACKS = ("mixed", "ignore_worst", "accuracy_control")


@dataclass(frozen=True)
class OpenVinoOptions:
    device: str = "CPU"  # the plugin that validates (and benches) the IR here
    # CPU plugin INFERENCE_PRECISION_HINT. Its default is bf16 on CPUs with bf16 support (this one has it): an fp32 IR
    # would be validated at bf16 accuracy. edgeconv asks for f32 unless told otherwise.
    inference_precision: str = "f32"
    preset: str = "performance"  # int8: NNCF preset of the first attempt
    model_type: str = "auto"  # int8: NNCF ModelType.TRANSFORMER keeps the attention's sensitive parts in float
    fast_bias_correction: bool = True
    weight_mode: str = "int8_asym"  # w8: nncf.compress_weights mode
    fallback: tuple[str, ...] = FALLBACKS  # int8: what to try, in order, while the model misses its gate
    placement: tuple[str, ...] = ("NPU", "GPU")  # devices whose op coverage is checked when present here


def _fail(profile: "Profile", key: str, message: str, hint: str) -> UsageError:
    return UsageError(f"{profile.source_file or profile.name}: [compiler] {key} of '{profile.name}' {message}", hint)


def _choice(profile: "Profile", key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(profile, key, f"= {value!r} is not one of {', '.join(choices)}", "see docs/targets/openvino.md")


def parse(profile: "Profile") -> OpenVinoOptions:
    raw = dict(profile.compiler)
    allowed = {f.name: f for f in fields(OpenVinoOptions)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            raise _fail(profile, key, "is not an OpenVINO option",
                        (f"did you mean '{close[0]}'? " if close else "") + f"allowed: {', '.join(sorted(allowed))}")
        default = getattr(OpenVinoOptions, key)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise _fail(profile, key, f"= {value!r} must be a list of strings", "see docs/targets/openvino.md")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise _fail(profile, key, f"= {value!r} must be true or false", "see docs/targets/openvino.md")
        elif not isinstance(value, type(default)) or isinstance(value, bool):
            raise _fail(profile, key, f"= {value!r} must be a {type(default).__name__}", "see docs/targets/openvino.md")
        kwargs[key] = value
    options = OpenVinoOptions(**kwargs)
    _choice(profile, "preset", options.preset, PRESETS)
    _choice(profile, "model_type", options.model_type, MODEL_TYPES)
    _choice(profile, "inference_precision", options.inference_precision, INFERENCE_PRECISIONS)
    _choice(profile, "weight_mode", options.weight_mode, WEIGHT_MODES)
    for step in options.fallback:
        _choice(profile, "fallback", step, FALLBACKS)
    return options
