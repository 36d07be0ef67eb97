"""An IR the CPU plugin cannot compile with a dynamic batch is saved with batch 1.

OpenVINO 2026's CPU plugin fails on some graphs when the batch dim is dynamic and compiles them once it is static:
Keras EfficientNetB0 (batch `?` from tf2onnx) after `nncf.compress_weights`, where the squeeze-excitation 1x1 Convs
become compressed FullyConnected ops ("[TransposeToReshape] ... f32[?,8] -> f32[1,8,1,?] CALLBACK HAS THROWN").
A user's application would meet the same failure, so the artifact is fixed rather than only the validation: when every
input's only dynamic dim is the batch, edgeconv compiles the model once; if that fails, it reshapes the inputs to
batch 1 and compiles again. If that compiles, the IR is saved static (notes.openvino.static_batch, and a warning);
if not, the first error stands. Models that compile as they are keep their dynamic batch.
"""

from __future__ import annotations

from typing import Any

from edgeconv.context import StepContext
from edgeconv.errors import UnsupportedError
from edgeconv.targets.openvino.options import OpenVinoOptions
from edgeconv.targets.openvino.runtime import compile_model


def batch_only_dynamic(model: Any) -> dict[str, list[int]] | None:
    """{input name: shape with batch 1} when each input's dynamic dims are at most its first one, else None (None too
    when nothing is dynamic: nothing to fix)."""
    shapes: dict[str, list[int]] = {}
    dynamic = False
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or len(shape) == 0:
            return None
        dims = list(shape)
        if any(d.is_dynamic for d in dims[1:]):
            return None
        dynamic |= dims[0].is_dynamic
        shapes[port.get_any_name()] = [1 if d.is_dynamic else d.get_length() for d in dims]
    return shapes if dynamic else None


def compilable(model: Any, options: OpenVinoOptions, ctx: StepContext, notes: dict[str, Any]) -> Any:
    """`model`, or the same model with batch 1 when only that makes it compile on options.device (see above)."""
    static = batch_only_dynamic(model)
    if static is None:
        return model
    try:
        compile_model(model, options)
        return model
    except UnsupportedError as dynamic_error:
        model.reshape({model.input(name): shape for name, shape in static.items()})
        try:
            compile_model(model, options)
        except UnsupportedError:
            raise dynamic_error from None
        notes["static_batch"] = {"shapes": static, "dynamic_error": dynamic_error.message}
        ctx.warn(f"the OpenVINO {options.device} plugin cannot compile this model with a dynamic batch "
                 f"({dynamic_error.message.split(': ', 1)[-1][:160]}): the IR is saved with batch 1")
        return model
