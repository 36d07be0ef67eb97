"""Keras (.keras / .h5) → ONNX with tf2onnx, through a tf.function over the loaded model."""

from __future__ import annotations

from edgeconv.context import StepContext
from edgeconv.converters._tf2onnx import convert_function
from edgeconv.converters.base import Converter
from edgeconv.formats import Artifact, Format


class KerasToOnnx(Converter):
    name = "keras_to_onnx"
    source = Format.KERAS
    target = Format.ONNX
    extra = "tf"
    requires = ("tensorflow", "tf2onnx")
    cost = 10
    cache_profile_keys = ("opset",)  # the rest of what it reads (source, input specs) is in every stage cache key
    cache_option_keys = ()

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        keras_model = ctx.source.handle()
        return convert_function(keras_model, ctx, ctx.work_dir / "model.onnx")
