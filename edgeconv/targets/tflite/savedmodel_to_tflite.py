"""TensorFlow SavedModel → TFLite directly with TFLiteConverter, through its serving_default signature (whose keys are
the source's input and output names)."""

from __future__ import annotations

from edgeconv.context import StepContext
from edgeconv.targets.tflite._convert import convert_saved_model, io_map
from edgeconv.converters.base import Converter
from edgeconv.formats import Artifact, Format, TensorLink


class SavedModelToTflite(Converter):
    name = "savedmodel_to_tflite"
    source = Format.SAVEDMODEL
    target = Format.TFLITE
    extra = "tflite"
    requires = ("tensorflow", "ai_edge_litert")
    cost = 5
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        io = io_map([TensorLink(s.name, s.name) for s in ctx.source.inputs],
                    [TensorLink(n, n) for n in ctx.source.output_names])
        ctx.notes["tflite_route"] = "SavedModel → TFLiteConverter"
        return convert_saved_model(artifact.path, io, ctx, ctx.work_dir / "model.tflite")
