"""Static QDQ quantization of (normalised) ONNX with ONNX Runtime's quantizer, driven by the profile's [quantize].

The input must already be normalised (edgeconv/normalise.py): Constant-node weights moved to initializers, BatchNorm
fused, shape subgraphs folded, opset >= 13 — otherwise ORT leaves weights float or writes invalid graphs.
"""

from __future__ import annotations

from typing import Any, Iterator

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer
from edgeconv.quantizers.calibration import SampleSet, open_samples

QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8", "uint16": "QUInt16", "int16": "QInt16"}
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def calibration_samples(ctx: StepContext) -> SampleSet:
    samples = open_samples(ctx.options.calib, ctx.source.inputs, ctx.profile.quantize.calibration_samples,
                           seed=ctx.options.seed, purpose="calibration")
    if samples.kind == "random":
        ctx.warn("calibrating with RANDOM data (--calib random): quantization ranges will not match real inputs")
    ctx.notes["calibration"] = samples.describe()
    return samples


def data_reader(samples: SampleSet, ctx: StepContext, task: Any) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class StreamingReader(CalibrationDataReader):
        """Feeds one sample at a time to ORT's calibrator and advances the progress bar."""

        def __init__(self) -> None:
            self._it: Iterator[dict[str, Any]] = iter(samples)

        def get_next(self) -> dict[str, Any] | None:
            feeds = next(self._it, None)
            if feeds is not None:
                task.advance()
            return feeds

        def rewind(self) -> None:
            self._it = iter(samples)

    return StreamingReader()


class OnnxQdq(Quantizer):
    name = "onnx_qdq"
    precisions = frozenset({"int8", "int16"})
    requires = ("onnxruntime",)
    needs_calibration = True

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("onnxruntime", "all")
        from onnxruntime import quantization as q

        scheme = ctx.profile.quantize
        activations = scheme.activations if scheme.precision == "int8" or scheme.activations.endswith("16") else "uint16"
        samples = calibration_samples(ctx)
        out = ctx.work_dir / f"model.{scheme.precision}.onnx"
        extra = {
            "ActivationSymmetric": scheme.symmetric_activations,
            "WeightSymmetric": scheme.symmetric_weights,
            **scheme.options,
        }
        if activations.endswith("16"):
            extra.setdefault("UseQDQContribOps", False)
        try:
            with ctx.reporter.task("calibrating", total=len(samples)) as task:
                q.quantize_static(
                    str(artifact.path), str(out), data_reader(samples, ctx, task),
                    quant_format=q.QuantFormat.QDQ if scheme.format == "qdq" else q.QuantFormat.QOperator,
                    activation_type=getattr(q.QuantType, QUANT_TYPES[activations]),
                    weight_type=getattr(q.QuantType, QUANT_TYPES[scheme.weights]),
                    per_channel=scheme.per_channel,
                    calibrate_method=getattr(q.CalibrationMethod, METHODS[scheme.method]),
                    op_types_to_quantize=None,
                    nodes_to_exclude=list(ctx.notes.get("fallback_nodes", [])) or None,
                    extra_options=extra,
                )
        except (KeyError, ValueError, RuntimeError) as e:
            raise UnsupportedError(f"ONNX Runtime could not quantize the model: {first_line(e)}",
                                   "try --set quantize.method=minmax, or keep the failing op in float with --set quantize.exclude_op_types=[...]") from e
        return Artifact(out, Format.ONNX)
