"""Keras (.keras / .h5) → Core ML ML program with coremltools' TensorFlow front end, directly.

coremltools 9 does not take a Keras 3 model object ("Unable to determine the type of the model") nor a SavedModel
written by `model.export()` ("Only a single concrete function is supported"). What it takes is ONE concrete function:
the model is wrapped in a tf.function with a fixed input signature (a dynamic batch dim becomes 1) and that concrete
function is converted. The model's NHWC layout is kept (coremltools inserts the transposes it needs).
"""

from __future__ import annotations

from typing import Any

from edgeconv.context import StepContext
from edgeconv.targets.coreml import _convert
from edgeconv.converters.base import Converter
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format


def concrete_function(handle: Any, ctx: StepContext) -> tuple[Any, list[str], list[str]]:
    """A concrete function of the Keras model over the source inputs (in order), returning a list of outputs; the TF
    names of its input placeholders and of its output tensors (Core ML names its I/O after them)."""
    from edgeconv.targets.tflite.keras_to_tflite import signature_specs

    tf = require("tensorflow", "tf")
    specs, keys = signature_specs(ctx)
    names = [s.name for s in ctx.source.inputs]

    def serve(*args: Any) -> list[Any]:
        return list(handle(dict(zip(names, args))))

    try:
        function = tf.function(serve, input_signature=specs).get_concrete_function()
    except (ValueError, TypeError) as e:
        raise InvalidInputError(f"cannot trace the Keras model for Core ML: {first_line(e)}",
                                "check --input-shape against the model's inputs") from e
    return function, keys, [t.name.split(":")[0] for t in function.outputs]


def convert_tf_function(function: Any, names: list[str], tf_outputs: list[str], ctx: StepContext, route: str) -> Artifact:
    """Convert one concrete function (inputs `names` in source order) and name the outputs after the source's."""
    mlmodel = _convert.convert([function], ctx, source="tensorflow", inputs=_convert.tensor_types(ctx, names),
                              outputs=[_typed(ctx, n) for n in tf_outputs])
    ctx.notes["coreml_route"] = route
    return _convert.finish(mlmodel, ctx, list(ctx.source.output_names))


def _typed(ctx: StepContext, name: str) -> Any:
    ct = _convert.coremltools()
    return ct.TensorType(name=name, dtype=_convert.io_dtype(ctx))


class KerasToCoreml(Converter):
    name = "keras_to_coreml"
    source = Format.KERAS
    target = Format.COREML
    extra = "coreml"
    requires = ("tensorflow", "keras", "coremltools")
    cost = 5
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _convert.coremltools()
        function, inputs, outputs = concrete_function(ctx.source.handle(), ctx)
        return convert_tf_function(function, inputs, outputs, ctx, "Keras → tf.function concrete function → coremltools")
