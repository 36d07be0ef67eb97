"""Full-integer TFLite (tflite-int8, tflite-int16x8) has no float island: every activation is an integer. A model that
computes a power spectrum in its graph and takes its Log (an audio front end: STFT, |X|², mel, + eps, Log) cannot be
represented then: its values span 1e-9 to 300, and almost every bin becomes 0 at 8 bits, so Log returns log(eps)
everywhere (the corpus keyword spotter at tflite-int8: -3.5 dB and top-1 0.06 after 45 s of conversion; at
tflite-int16x8: -2.5 dB). The ONNX integer targets keep that front end float (quantizers/log_domain.py); TFLite's
full-integer converter cannot. So the conversion stops before onnx2tf runs, naming the nodes and the routes that work.

Measured with quantizers/log_domain.py on the calibration samples, at the profile's activation width; skipped with
`quantize.options.log_domain_float = false` (then the model is converted and judged by its gate, as before) and without
--calib (random inputs say nothing about a spectrum's range).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from edgeconv.context import StepContext
from edgeconv.errors import UnsupportedError

LISTED = 4  # nodes named in the message (all of them are in the details)


def refuse_unresolvable_front_end(onnx_path: Path, ctx: StepContext, samples: Iterable[dict[str, np.ndarray]],
                                  bits: int) -> None:
    """Exit 4 when `bits`-bit activations cannot resolve what a Log / Sqrt / Reciprocal / divisor reads on the
    calibration `samples` (module doc)."""
    if not ctx.profile.quantize.options.get("log_domain_float", True):
        return
    import onnx

    from edgeconv.quantizers.log_domain import SENSITIVE_INPUTS, log_domain_nodes

    nodes = log_domain_nodes(onnx.load_model(str(onnx_path)), samples, bits)
    if not nodes:
        return
    reader = next((n.op_type for n in nodes if n.op_type in SENSITIVE_INPUTS), nodes[-1].op_type)
    names = ", ".join(n.node for n in nodes[:LISTED]) + (f" and {len(nodes) - LISTED} more" if len(nodes) > LISTED else "")
    raise UnsupportedError(
        f"{ctx.profile.name}: {bits}-bit activations cannot resolve what {reader} reads (an in-graph "
        f"power spectrum?), and a full-integer TFLite has no float island for it: {len(nodes)} node(s) would need float "
        f"({names})",
        "use tflite-fp16 or tflite-dynamic; for an integer NPU, cpu-int8 / hexagon-int8 / executorch-int8 keep this "
        "front end float; or compute the features outside the model and feed them as its input",
        details={"float_nodes": [n.to_json() for n in nodes], "bits": bits})
