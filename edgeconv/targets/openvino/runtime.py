"""OpenVINO runtime: runs an IR (.xml + .bin) on an OpenVINO plugin (CPU here), with feeds in the source model's input
names and outputs in its order. The IR keeps the ONNX model's I/O (names, NCHW layout, float32 I/O), so inputs are
matched by tensor name, then by position."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.runtimes.base import Runtime, Session
from edgeconv.targets.openvino._offline import no_telemetry
from edgeconv.targets.openvino.options import OpenVinoOptions, parse

if TYPE_CHECKING:
    from edgeconv.context import StepContext


@lru_cache(maxsize=1)
def core() -> Any:
    no_telemetry()
    ov = require("openvino", "openvino", purpose="OpenVINO IR")
    return ov.Core()


def options_of(ctx: "StepContext | None") -> OpenVinoOptions:
    if ctx is not None and ctx.profile.family == "openvino":
        return parse(ctx.profile)
    return OpenVinoOptions()


def plugin_config(options: OpenVinoOptions) -> dict[str, str]:
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if options.device == "CPU":
        config["INFERENCE_PRECISION_HINT"] = options.inference_precision
    return config


def read_model(artifact: Artifact) -> Any:
    weights = next((c for c in artifact.companions if c.suffix == ".bin"), artifact.path.with_suffix(".bin"))
    try:
        return core().read_model(str(artifact.path), str(weights))
    except Exception as e:
        raise InvalidInputError(f"OpenVINO cannot read {artifact.path.name}: {first_line(e)}",
                                "the .xml / .bin pair is damaged or from a newer OpenVINO") from e


def compile_model(model: Any, options: OpenVinoOptions) -> Any:
    if options.device not in core().available_devices:
        raise UnsupportedError(f"OpenVINO device {options.device} is not available here (devices: "
                               f"{', '.join(core().available_devices)})", "use --set compiler.device=CPU")
    try:
        return core().compile_model(model, options.device, plugin_config(options))
    except Exception as e:
        raise UnsupportedError(f"the OpenVINO {options.device} plugin cannot compile the model: {first_line(e)}",
                               "the message names the op; see docs/targets/openvino.md") from e


def _dims(port: Any) -> tuple[int | None, ...]:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in shape)


def _dtype(port: Any) -> str:
    try:
        return np.dtype(port.get_element_type().to_dtype()).name
    except Exception:  # noqa: BLE001 - an element type numpy lacks (bf16): report it by OpenVINO's name
        return port.get_element_type().get_type_name()


def ir_io(artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    """The IR's own inputs and output names (for a bare .xml outside an edgeconv output)."""
    model = read_model(artifact)
    inputs = tuple(TensorSpec(p.get_any_name(), _dims(p), _dtype(p)) for p in model.inputs)
    return inputs, tuple(p.get_any_name() if p.get_names() else f"output_{i}" for i, p in enumerate(model.outputs))


def match_inputs(ports: list[Any], source: tuple[TensorSpec, ...]) -> list[str]:
    """The source input name that feeds each IR input: by tensor name, else by position."""
    names = [s.name for s in source]
    out = []
    for i, port in enumerate(ports):
        hit = next((n for n in names if n in port.get_names()), None)
        if hit is None and i < len(names):
            hit = names[i]
        out.append(hit or port.get_any_name())
    return out


class OpenVinoSession(Session):
    def __init__(self, compiled: Any, source_inputs: tuple[TensorSpec, ...], output_names: tuple[str, ...] = ()):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        ports = list(compiled.inputs)
        self._feed_names = match_inputs(ports, source_inputs)
        self._dtypes = [np.dtype(_dtype(p)) if _dtype(p) in np.sctypeDict else np.float32 for p in ports]
        self.inputs = tuple(TensorSpec(n, _dims(p), _dtype(p)) for n, p in zip(self._feed_names, ports))
        outs = list(compiled.outputs)
        self.output_names = output_names or tuple(p.get_any_name() if p.get_names() else f"output_{i}"
                                                  for i, p in enumerate(outs))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        data = {}
        for i, name in enumerate(self._feed_names):
            if name not in feeds:
                raise InvalidInputError(f"no sample for input '{name}'", f"samples have: {', '.join(feeds)}")
            data[i] = np.ascontiguousarray(feeds[name].astype(self._dtypes[i], copy=False))
        try:
            result = self.request.infer(data, share_inputs=True, share_outputs=True)  # outputs copied below
        except Exception as e:
            raise InvalidInputError(f"OpenVINO failed to run the model: {first_line(e)}",
                                    "check that the samples' shapes match the model's inputs") from e
        return [np.array(result[port]) for port in self.compiled.outputs]


class OpenVinoRuntime(Runtime):
    name = "openvino"
    formats = frozenset({Format.OPENVINO})
    extra = "openvino"
    requires = ("openvino",)

    def load(self, artifact: Artifact, ctx: "StepContext") -> Session:
        options = options_of(ctx)
        compiled = compile_model(read_model(artifact), options)
        return OpenVinoSession(compiled, ctx.source.inputs, tuple(ctx.source.output_names))
