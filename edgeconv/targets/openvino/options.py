"""The openvino profiles' `[compiler]` keys, typed: an unknown or mistyped key is a usage error (exit 2) naming it,
the profile file and its line, raised when the profile loads (targets/family_options.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeconv.targets.family_options import option, options_for

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

FAMILY = "openvino"
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
    inference_precision: str = option("f32", choices=INFERENCE_PRECISIONS)
    preset: str = option("performance", choices=PRESETS)  # int8: NNCF preset of the first attempt
    # int8: NNCF ModelType.TRANSFORMER keeps the attention's sensitive parts in float
    model_type: str = option("auto", choices=MODEL_TYPES)
    fast_bias_correction: bool = True
    weight_mode: str = option("int8_asym", choices=WEIGHT_MODES)  # w8: nncf.compress_weights mode
    fallback: tuple[str, ...] = option(FALLBACKS, choices=FALLBACKS)  # int8: what to try, in order, while it misses its gate
    placement: tuple[str, ...] = ("NPU", "GPU")  # devices whose op coverage is checked when present here


OPTIONS = OpenVinoOptions


def parse(profile: "Profile") -> OpenVinoOptions:
    return options_for(profile)
