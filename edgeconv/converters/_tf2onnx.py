"""Shared by keras_to_onnx and savedmodel_to_onnx: tf2onnx on a tf.function with a fixed input signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format


def tensor_signature(ctx: StepContext) -> list[Any]:
    tf = require("tensorflow", "tf")
    specs = []
    for spec in ctx.source.inputs:
        dims = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
        specs.append(tf.TensorSpec(dims, getattr(tf, spec.dtype, tf.float32), name=spec.name))
    return specs


def convert_function(fn: Callable[..., Any], ctx: StepContext, out: Path) -> Artifact:
    """Run tf2onnx on `fn(**inputs) -> list of outputs`; name the ONNX inputs/outputs as the source names them."""
    tf = require("tensorflow", "tf")
    tf2onnx = require("tf2onnx", "tf", purpose="TensorFlow → ONNX export")
    import onnx

    names = [s.name for s in ctx.source.inputs]
    signature = tensor_signature(ctx)

    @tf.function(input_signature=signature)
    def wrapped(*args: Any) -> Any:
        return fn(dict(zip(names, args)))

    try:
        model_proto, _ = tf2onnx.convert.from_function(wrapped, input_signature=signature, opset=ctx.profile.opset)
    except ValueError as e:
        raise InvalidInputError(f"tf2onnx could not trace the model: {first_line(e)}", "check the input shapes") from e
    except Exception as e:
        raise UnsupportedError(f"tf2onnx could not convert the model: {first_line(e)}",
                               "the message names the op; for TFLite targets the direct Keras route may still work") from e
    for output, name in zip(model_proto.graph.output, ctx.source.output_names):
        _rename_value(model_proto.graph, output.name, name)
    onnx.save_model(model_proto, str(out))
    ctx.notes["exporter"] = f"tf2onnx {tf2onnx.__version__} (TensorFlow {tf.__version__})"
    return Artifact(out, Format.ONNX)


def _rename_value(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
