"""Keras (.keras / .h5) → TFLite directly with TFLiteConverter: the most faithful route (no ONNX round trip, the
model's own NHWC layout kept). The model is exported to a SavedModel whose serving signature is keyed by the source's
input names and `output_<i>` for the i-th output, then converted (and quantized) by targets/tflite/_convert.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.context import StepContext
from edgeconv.targets.tflite._convert import SIGNATURE, convert_saved_model, io_map, sanitize
from edgeconv.converters.base import Converter
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format, IoMap, TensorLink


def signature_specs(ctx: StepContext) -> tuple[list[Any], list[str]]:
    """tf.TensorSpecs for the source inputs (a dynamic batch dim becomes 1: edge runtimes want static shapes), and
    their signature keys."""
    tf = require("tensorflow", "tf")
    specs, keys = [], []
    for spec in ctx.source.inputs:
        dims = [d if isinstance(d, int) and d > 0 else (1 if i == 0 else None) for i, d in enumerate(spec.shape)]
        key = sanitize(spec.name)
        while key in keys:
            key += "_"
        keys.append(key)
        specs.append(tf.TensorSpec(dims, getattr(tf, spec.dtype, tf.float32), name=key))
    return specs, keys


def export_keras(handle: Any, ctx: StepContext, folder: Path) -> IoMap:
    """Write `handle` (sources/tensorflow_source.KerasModel) as a SavedModel with our signature."""
    tf = require("tensorflow", "tf")
    specs, keys = signature_specs(ctx)
    names = [s.name for s in ctx.source.inputs]
    model = handle.model

    def serve(*args: Any) -> dict[str, Any]:
        outputs = handle(dict(zip(names, args)))
        return {f"output_{i}": o for i, o in enumerate(outputs)}

    try:
        if type(model).__module__.startswith("tf_keras"):  # legacy .h5 loaded with tf_keras: a trackable tf.Module
            function = tf.function(serve, input_signature=specs)
            tf.saved_model.save(model, str(folder), signatures={SIGNATURE: function.get_concrete_function()})
        else:
            # Keras 3: ExportArchive tracks the variables. (A bare tf.Module holding a Keras 3 model saves a SavedModel
            # that reloads fine but that TFLiteConverter turns into garbage weights.)
            keras = require("keras", "tf")
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint(SIGNATURE, serve, input_signature=specs)
            archive.write_out(str(folder), verbose=False)
    except (ValueError, TypeError) as e:
        raise InvalidInputError(f"cannot trace the Keras model for TFLite: {first_line(e)}",
                                "check --input-shape against the model's inputs") from e
    except Exception as e:
        raise UnsupportedError(f"cannot export the Keras model to a SavedModel for TFLite: {first_line(e)}",
                               "custom layers must be serialisable TensorFlow code") from e
    return io_map([TensorLink(n, k) for n, k in zip(names, keys)],
                  [TensorLink(n, f"output_{i}") for i, n in enumerate(ctx.source.output_names)])


class KerasToTflite(Converter):
    name = "keras_to_tflite"
    source = Format.KERAS
    target = Format.TFLITE
    extra = "tflite"
    requires = ("tensorflow", "keras", "ai_edge_litert")
    cost = 5  # direct: beats keras → onnx → tflite
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        folder = ctx.work_dir / "saved_model"
        io = export_keras(ctx.source.handle(), ctx, folder)
        ctx.notes["tflite_route"] = "keras → SavedModel → TFLiteConverter"
        return convert_saved_model(folder, io, ctx, ctx.work_dir / "model.tflite")
