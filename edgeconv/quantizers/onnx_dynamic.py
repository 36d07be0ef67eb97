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

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer
from edgeconv.targets.schema import ALL_OP_TYPES

log = logging.getLogger(__name__)
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "GRU")
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}


class OnnxDynamic(Quantizer):
    name = "onnx_dynamic"
    precisions = frozenset({"dynamic"})
    requires = ("onnxruntime",)

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("onnxruntime", "all")
        from onnxruntime import quantization as q

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
        ctx.notes["quantize"] = {"quantizer": self.name, "op_types": list(op_types), "per_channel": scheme.per_channel,
                                 "check": check.to_json(), "excluded_nodes": excluded}
        return Artifact(out, Format.ONNX)
