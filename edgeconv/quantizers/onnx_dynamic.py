"""Dynamic int8 quantization of ONNX (ONNX Runtime's quantize_dynamic): integer weights, activations quantized at run
time, no calibration data.

Which op types are quantized comes from the profile (`[quantize.options] op_types`); the default is the MatMul-family
(MatMul, Gemm, Attention, LSTM, GRU). Measured on ORT CPU: dynamic Conv (ConvInteger) runs ~4x SLOWER than float, so
Conv is only quantized when a profile asks for it (size matters more than speed).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer
from edgeconv.targets.schema import ALL_OP_TYPES

log = logging.getLogger(__name__)
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "GRU")
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
FLOAT_TYPES = (1, 10, 11, 16)  # float32, float16, double, bfloat16


class OnnxDynamic(Quantizer):
    name = "onnx_dynamic"
    precisions = frozenset({"dynamic"})
    requires = ("onnxruntime",)

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("onnxruntime", "all")
        from onnxruntime import quantization as q

        from edgeconv.quantizers.calibration import RANDOM
        from edgeconv.quantizers.checks import check_quantized
        from edgeconv.quantizers.onnx_qdq import excluded_by_op_type, op_types_in, prepare_float

        scheme = ctx.profile.quantize
        options = dict(scheme.options)
        asked = options.get("op_types") or DEFAULT_OP_TYPES
        if scheme.weights not in WEIGHT_TYPES:
            raise UnsupportedError(f"dynamic quantization takes int8 or uint8 weights, not {scheme.weights!r}",
                                   "--set quantize.weights=int8")
        float_path = prepare_float(artifact, ctx.work_dir, scheme.per_channel, "float32")
        op_types = tuple(op_types_in(float_path) if asked == ALL_OP_TYPES else asked)
        excluded = [*options.get("nodes_to_exclude", ()), *excluded_by_op_type(float_path, tuple(scheme.exclude_op_types))]
        out = ctx.work_dir / "model.dynamic.onnx"
        extra = {k: v for k, v in options.items() if k[:1].isupper()}
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                q.quantize_dynamic(str(float_path), str(out), op_types_to_quantize=list(op_types),
                                   per_channel=scheme.per_channel, reduce_range=bool(options.get("reduce_range", False)),
                                   weight_type=getattr(q.QuantType, WEIGHT_TYPES[scheme.weights]),
                                   nodes_to_exclude=excluded or None, extra_options=extra)
        except Exception as e:
            log.debug("quantizer output:\n%s", buffer.getvalue())
            raise UnsupportedError(f"ONNX Runtime could not quantize the model dynamically: {first_line(e)}",
                                   "keep the failing op types in float with --set quantize.exclude_op_types=[...]") from e
        skip_types = {"Conv", "ConvTranspose", "Gemm", "MatMul"} - set(op_types)
        check = check_quantized(artifact.path, out, integer_weights=True, skip_nodes=set(excluded), skip_op_types=skip_types)
        if check.ops.get("MatMulInteger", 0) + check.ops.get("DynamicQuantizeMatMul", 0) + check.ops.get("ConvInteger", 0) == 0:
            ctx.warn(f"dynamic quantization found nothing to quantize (op types {', '.join(op_types)}); the model stays float")
        size = size_report(float_path, out, check.ops)
        advice = size_advice(size, ctx.profile.name, op_types, has_calib=ctx.options.calib not in (None, RANDOM))
        if advice:
            ctx.warn(advice)
        ctx.notes["quantize"] = {"quantizer": self.name, "op_types": list(op_types), "per_channel": scheme.per_channel,
                                 "check": check.to_json(), "excluded_nodes": excluded, "size": size}
        return Artifact(out, Format.ONNX)


CONV_TYPES = ("Conv", "ConvTranspose")
CONV_HEAVY = 0.5  # Conv layers holding at least this share of the float weights: a CNN, the wrong model for dynamic int8


def size_report(float_path: Path, out: Path, ops: dict[str, int]) -> dict[str, Any]:
    """File sizes of the float model and of its dynamic version, and how much of the float weights the Conv layers
    hold (by element count) and whether they were quantized (ConvInteger)."""
    import numpy as np
    import onnx

    model = onnx.load_model(str(float_path), load_external_data=False)
    weights = {i.name: int(np.prod(i.dims or [1])) for i in model.graph.initializer if i.data_type in FLOAT_TYPES}
    convs = [n for n in model.graph.node if n.op_type in CONV_TYPES]
    conv_weights = sum(weights.get(name, 0) for n in convs for name in n.input[1:])
    total = sum(weights.values())
    return {"float_bytes": float_path.stat().st_size, "bytes": out.stat().st_size, "conv_layers": len(convs),
            "conv_weight_share": round(conv_weights / total, 4) if total else 0.0,
            "conv_quantized": ops.get("ConvInteger", 0)}


def size_advice(size: dict[str, Any], profile: str, op_types: tuple[str, ...], has_calib: bool) -> str | None:
    """The warning for a result that surprises: a CNN whose convs stayed float (the file barely shrinks), or a file
    not smaller than the float one. None when dynamic int8 did its job. (Convs quantized dynamically, ConvInteger,
    run slower than float on CPU: the latency check names that cause.)"""
    ratio = size["bytes"] / size["float_bytes"] if size["float_bytes"] else 1.0
    share, n_conv = size["conv_weight_share"], size["conv_layers"]
    static = ("--target cpu-int8 (static int8: Conv and MatMul weights and activations, calibrated on your --calib "
              "data)" if has_calib else "--target cpu-int8 --calib DIR (static int8: Conv and MatMul weights and "
              "activations, calibrated on ~100 representative inputs)")
    if n_conv and share >= CONV_HEAVY and not size["conv_quantized"]:
        return (f"{profile}: the {n_conv} Conv layer(s) hold {share:.0%} of the weights and stay float (dynamic "
                f"quantization covers {', '.join(op_types)} here; ONNX Runtime's dynamic Conv runs slower than float on "
                f"CPU), so the file is {ratio:.0%} of the float one ({size['bytes']} vs {size['float_bytes']} bytes); "
                f"for a CNN use {static}")
    if ratio >= 1.0:
        cause = (f"the Conv layers ({share:.0%} of the weights) stay float" if n_conv and not size["conv_quantized"]
                 else "few weights were quantized, and the scales, zero points and run-time quantize nodes added "
                      "outweigh them")
        return (f"{profile}: the dynamic model is not smaller than the float one ({size['bytes']} vs "
                f"{size['float_bytes']} bytes): {cause}; for a CNN use {static}")
    return None
