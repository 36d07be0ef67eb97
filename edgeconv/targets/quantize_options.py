"""The `[quantize.options]` keys, typed, checked when the profile loads (an unknown or mistyped key is exit 2 naming
the key, the file and the line, also through `--set quantize.options.KEY=...`).

Lower-case keys are edgeconv's, read by the quantizers (onnx_qdq.py, onnx_dynamic.py, onnx_int4.py, onnx_fp16.py, fallback.py,
target_scoring.py, log_domain.py) and the Core ML compression (targets/coreml/compression.py); keys starting with a capital letter are
ONNX Runtime's `extra_options` (e.g. `CalibPercentile = 99.99`), passed through unchanged and not checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeconv.targets.family_options import Table, option, parse_options
from edgeconv.targets.schema import QUANTIZE_OPTION_CHOICES
from edgeconv.targets.tensorrt.qdq import PLACEMENTS


@dataclass(frozen=True)
class QuantizeOptions:
    op_types: tuple[str, ...] | str = ()  # the op types quantized, or "all" (checked by schema._check_op_types)
    extra_op_types: tuple[str, ...] = ()  # quantized on top of ONNX Runtime's defaults (or of op_types)
    nodes_to_exclude: tuple[str, ...] = ()  # node names kept float
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI
    preprocess: str | dict[str, Any] | None = None  # image preprocessing spec of the calibration data (calibration.py)
    fallback_candidates: int | None = option(None, bounds=(0, None))  # layers the accuracy fallback tries, at most
    placement: str = option("", choices=("", *PLACEMENTS))  # "tensorrt": Q/DQ where TensorRT fuses it
    backend_rules: str = option("", choices=QUANTIZE_OPTION_CHOICES["backend_rules"])  # "qnn": ORT's QNN overrides
    score_on: str = option("ort", choices=QUANTIZE_OPTION_CHOICES["score_on"])  # where the fallback judges its trials
    fp16_islands: bool = True  # fp16: keep overflow-prone subgraphs float32 (quantizers/fp16_islands.py)
    fp16_max_abs: float = option(8192.0, bounds=(0.0, None))  # fp16: |value| above which a tensor stays float32
    # int8 / int16: what a Log / Sqrt / Reciprocal reads stays float where integers cannot resolve it (an in-graph power
    # spectrum; quantizers/log_domain.py, also for executorch-int8)
    log_domain_float: bool = True
    # int8 / int16 QDQ on a graph with attention: ORT's default op set or the compute ops only, by measurement
    # ("measure"), or one of them without a trial (quantizers/attention_op_set.py)
    attention_op_set: str = option("measure", choices=QUANTIZE_OPTION_CHOICES["attention_op_set"])
    # int8 / int16 QDQ: layer-by-layer empirical bias correction, kept where it measures better (bias_correction.py)
    bias_correction: str = option("measure", choices=QUANTIZE_OPTION_CHOICES["bias_correction"])
    weight_threshold: int = option(2048, bounds=(0, None))  # Core ML: weights with at most this many elements stay float
    palettize_mode: str = "kmeans"  # Core ML palettize4 / palettize6: coremltools' palettization mode
    # Core ML palettize4 / palettize6: bits per compressed weight (tables included) the mixed-bit search may spend to
    # meet the gate (targets/coreml/mixed_bits.py); unset: the palette width + 1.5; the width itself: no search
    max_average_bits: float | None = option(None, bounds=(1.0, 16.0))
    block_size: int = option(32, bounds=(16, 2048))  # int4: weights per scale along K (a power of two; onnx_int4.py)
    accuracy_level: int = option(0, bounds=(0, 4))  # int4: MatMulNBits' compute type (0: ORT's default; 4: int8)


def is_ort_extra(key: str) -> bool:
    """Keys starting with a capital letter are ONNX Runtime's extra_options, not edgeconv's."""
    return key[:1].isupper()


def parse_quantize_options(data: dict[str, Any], table: Table) -> QuantizeOptions:
    """edgeconv's keys of a `[quantize.options]` table as QuantizeOptions (ONNX Runtime's keys left out)."""
    return parse_options(QuantizeOptions, {k: v for k, v in data.items() if not is_ort_extra(k)}, table)
