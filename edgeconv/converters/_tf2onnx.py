"""Shared by keras_to_onnx and savedmodel_to_onnx: tf2onnx on a tf.function with a fixed input signature."""

from __future__ import annotations

import re
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

    wanted = ctx.profile.opset.preferred
    opset = min(wanted, max(tf2onnx.constants.OPSET_TO_IR_VERSION))  # tf2onnx 1.17 writes up to 18
    if opset < wanted:
        ctx.notes["export_opset"] = (f"tf2onnx {tf2onnx.__version__} writes up to opset {opset}: exported at {opset}"
                                     + (f", normalisation upgrades to {wanted} (the target takes {ctx.profile.opset})"
                                        if opset < ctx.profile.opset.min else ""))
    try:
        model_proto, _ = tf2onnx.convert.from_function(wrapped, input_signature=signature, opset=opset)
    except ValueError as e:
        raise InvalidInputError(f"tf2onnx could not trace the model: {first_line(e)}", "check the input shapes") from e
    except Exception as e:
        raise UnsupportedError(f"tf2onnx could not convert the model: {first_line(e)}",
                               "the message names the op; for TFLite targets the direct Keras route may still work") from e
    for output, name in zip(model_proto.graph.output, ctx.source.output_names):
        _rename_value(model_proto.graph, output.name, name)
    renumber_generated_names(model_proto.graph)
    onnx.save_model(model_proto, str(out))
    ctx.notes["exporter"] = f"tf2onnx {tf2onnx.__version__} (TensorFlow {tf.__version__})"
    return Artifact(out, Format.ONNX)


_GENERATED = re.compile(r"^(.*__)(\d+)((?::\d+)?)$")  # tf2onnx's make_name: "<base>__<counter>", maybe ":<port>"


def renumber_generated_names(graph: Any) -> None:
    """tf2onnx numbers the names it makes up from a process-wide counter, in an order that follows Python's string
    hashing: the same model exports with other names (other bytes) from run to run (PYTHONHASHSEED) and after another
    conversion in the same process. Renumber them 1, 2, ... in order of first use, walking the nodes in graph order
    (subgraphs share the numbering: they may use outer names); initializers are then sorted by name. Only generated
    names change: the model's inputs and outputs keep theirs."""
    keep = {v.name for v in [*graph.input, *graph.output]}
    numbers: dict[str, str] = {}

    def rename(name: str) -> str:
        match = _GENERATED.match(name)
        if not match or name in keep:
            return name
        stem = match.group(1) + match.group(2)  # "Transpose__38" for "Transpose__38:0" too
        if stem not in numbers:
            numbers[stem] = f"{match.group(1)}{len(numbers) + 1}"
        return numbers[stem] + match.group(3)

    def walk(g: Any) -> None:
        for node in g.node:
            node.name = rename(node.name)
            node.input[:] = [rename(i) for i in node.input]
            node.output[:] = [rename(o) for o in node.output]
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)
        for value in [*g.initializer, *g.value_info, *g.input, *g.output]:
            value.name = rename(value.name)
        ordered = sorted(g.initializer, key=lambda t: t.name)
        del g.initializer[:]
        g.initializer.extend(ordered)

    walk(graph)


def _rename_value(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
