"""ONNX float32 → float16 (weights and compute), optionally keeping float32 model inputs/outputs."""

from __future__ import annotations

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer


class OnnxFp16(Quantizer):
    name = "onnx_fp16"
    precisions = frozenset({"fp16"})
    requires = ("onnxruntime",)

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        import onnx

        require("onnxruntime", "all")
        from onnxruntime.transformers.float16 import convert_float_to_float16

        scheme = ctx.profile.quantize
        model = onnx.load_model(str(artifact.path))
        try:
            fp16 = convert_float_to_float16(model, keep_io_types=scheme.keep_io_types,
                                            op_block_list=list(scheme.exclude_op_types) or None)
        except Exception as e:
            raise UnsupportedError(f"float16 conversion failed: {first_line(e)}", "keep the failing op types in float32 with --set quantize.exclude_op_types=[...]") from e
        out = ctx.work_dir / "model.fp16.onnx"
        onnx.save_model(fp16, str(out))
        return Artifact(out, Format.ONNX)
