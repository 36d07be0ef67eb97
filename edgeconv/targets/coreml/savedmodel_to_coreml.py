"""TensorFlow SavedModel → Core ML: the serving signature (one concrete function, which is what coremltools takes;
the SavedModel directory itself is refused by it) converted with coremltools' TensorFlow front end."""

from __future__ import annotations

from edgeconv.context import StepContext
from edgeconv.targets.coreml import _convert
from edgeconv.converters.base import Converter
from edgeconv.targets.coreml.keras_to_coreml import convert_tf_function
from edgeconv.formats import Artifact, Format


class SavedModelToCoreml(Converter):
    name = "savedmodel_to_coreml"
    source = Format.SAVEDMODEL
    target = Format.COREML
    extra = "coreml"
    requires = ("tensorflow", "coremltools")
    cost = 5
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _convert.coremltools()
        handle = ctx.source.handle()  # sources/tensorflow_source.SavedModelFunction
        signature = handle.signature
        specs = signature.structured_input_signature[1]
        inputs = [specs[n].name or n for n in handle.input_names]
        # signature outputs come flattened in sorted-key order, the order of handle.output_names
        outputs = [t.name.split(":")[0] for t in signature.outputs]
        return convert_tf_function(signature, inputs, outputs, ctx, "SavedModel serving signature → coremltools")
