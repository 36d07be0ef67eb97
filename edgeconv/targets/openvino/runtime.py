"""OpenVINO runtime: runs an IR (.xml + .bin) on an OpenVINO plugin (CPU here), with feeds in the source model's input
names and outputs in its order. The IR keeps the ONNX model's I/O (names, NCHW layout, float32 I/O), so inputs are
matched by tensor name, then by position.

Validation compiles with PERFORMANCE_HINT=LATENCY and runs one synchronous infer() at a time. `edgeconv bench` can ask
for OpenVINO's throughput settings instead (load_tuned: `--mode` → PERFORMANCE_HINT, `--streams` → NUM_STREAMS) and
keeps `-j` requests in flight through an AsyncInferQueue (run_parallel), as OpenVINO's benchmark_app does."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, clean_lines, first_line
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.runtimes.base import Runtime, Session
from edgeconv.targets.openvino._offline import no_telemetry
from edgeconv.targets.openvino.options import OpenVinoOptions, parse

if TYPE_CHECKING:
    from edgeconv.context import StepContext


def ov_message(e: BaseException, limit: int = 300) -> str:
    """The informative line of an OpenVINO exception: its text is a stack of `Exception from src/...cpp:117:` location
    lines with the reason (`Check '...' failed at ...`, or plain text) after them; first_line alone says nothing."""
    lines = [ln.strip() for ln in clean_lines(str(e)) if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from src/")]
    return (useful[0][:limit] if useful else first_line(e, limit))


@lru_cache(maxsize=1)
def core() -> Any:
    no_telemetry()
    ov = require("openvino", "openvino", purpose="OpenVINO IR")
    return ov.Core()


def options_of(ctx: "StepContext | None") -> OpenVinoOptions:
    if ctx is not None and ctx.profile.family == "openvino":
        return parse(ctx.profile)
    return OpenVinoOptions()


MODES = {"latency": "LATENCY", "throughput": "THROUGHPUT"}  # `bench --mode` → ov.properties.hint.performance_mode
# what `bench` reports of a compiled model (ov.properties.hint.performance_mode, ov.properties.streams.num, ...)
REPORTED = ("PERFORMANCE_HINT", "NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "INFERENCE_NUM_THREADS",
            "INFERENCE_PRECISION_HINT")


# The CPU plugin's internal property that turns its low-precision transformations off: FakeQuantize is then computed
# in float (exactly what the quantized model specifies) instead of by int8 kernels. Set for validation and the int8
# search on hosts whose int8 kernels saturate (host_cpu.py): there the kernels lost 15 dB SNR on a transformer block
# that computes within 0.1 dB of a VNNI CPU when emulated.
EXACT_INT8 = {"LP_TRANSFORMS_MODE": False}


def exact_int8_needed(options: OpenVinoOptions) -> bool:
    from edgeconv.host_cpu import host_int8_saturates

    return options.device == "CPU" and host_int8_saturates()


def plugin_config(options: OpenVinoOptions, mode: str | None = None, streams: int | str | None = None,
                  exact_int8: bool = False) -> dict[str, Any]:
    """The compile_model config. mode: a MODES key (default latency); streams: NUM_STREAMS, an int ≥ 1 or "AUTO"
    (the plugin picks, as the THROUGHPUT hint does; it caps an int at what the cores allow); exact_int8: compute int8
    exactly on a host whose int8 kernels saturate (EXACT_INT8; a no-op elsewhere)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": MODES[mode or "latency"]}
    if streams is not None:
        config["NUM_STREAMS"] = streams
    if options.device == "CPU":
        config["INFERENCE_PRECISION_HINT"] = options.inference_precision
    if exact_int8 and exact_int8_needed(options):
        config.update(EXACT_INT8)
    return config


def read_model(artifact: Artifact) -> Any:
    weights = next((c for c in artifact.companions if c.suffix == ".bin"), artifact.path.with_suffix(".bin"))
    try:
        return core().read_model(str(artifact.path), str(weights))
    except Exception as e:
        raise InvalidInputError(f"OpenVINO cannot read {artifact.path.name}: {ov_message(e)}",
                                "the .xml / .bin pair is damaged or from a newer OpenVINO") from e


def compile_model(model: Any, options: OpenVinoOptions, mode: str | None = None,
                  streams: int | str | None = None, exact_int8: bool = False) -> Any:
    if options.device not in core().available_devices:
        raise UnsupportedError(f"OpenVINO device {options.device} is not available here (devices: "
                               f"{', '.join(core().available_devices)})", "use --set compiler.device=CPU")
    try:
        return core().compile_model(model, options.device, plugin_config(options, mode, streams, exact_int8))
    except Exception as e:
        raise UnsupportedError(f"the OpenVINO {options.device} plugin cannot compile the model: {ov_message(e)}",
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
        self._queues: dict[int, Any] = {}
        self._latencies: dict[int, list[float]] = {}
        ports = list(compiled.inputs)
        self._feed_names = match_inputs(ports, source_inputs)
        self._dtypes = [np.dtype(_dtype(p)) if _dtype(p) in np.sctypeDict else np.float32 for p in ports]
        self.inputs = tuple(TensorSpec(n, _dims(p), _dtype(p)) for n, p in zip(self._feed_names, ports))
        outs = list(compiled.outputs)
        self.output_names = output_names or tuple(p.get_any_name() if p.get_names() else f"output_{i}"
                                                  for i, p in enumerate(outs))

    def _data(self, feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        data = {}
        for i, name in enumerate(self._feed_names):
            if name not in feeds:
                raise InvalidInputError(f"no sample for input '{name}'", f"samples have: {', '.join(feeds)}")
            data[i] = np.ascontiguousarray(feeds[name].astype(self._dtypes[i], copy=False))
        return data

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in REPORTED:
            try:
                value = self.compiled.get_property(key)
            except Exception:  # noqa: BLE001 - a plugin without this property
                continue
            if hasattr(value, "get_type_name"):  # an ov.Type (INFERENCE_PRECISION_HINT): f32, bf16...
                value = value.get_type_name()
            out[key] = value if isinstance(value, (int, float, bool)) else str(value)
        return out

    def parallel_driver(self, jobs: int) -> str:
        return f"AsyncInferQueue of {jobs} infer request{'s' if jobs > 1 else ''}"

    def run_parallel(self, feeds: dict[str, np.ndarray], jobs: int, runs: int, max_seconds: float | None = None,
                     advance: Any = None) -> tuple[list[float], float]:
        """`jobs` infer requests of an AsyncInferQueue, each with its own copy of the inputs set once; start_async
        blocks while all are busy. Latency: each request's own (InferRequest.latency, as benchmark_app reports)."""
        import time

        ov = require("openvino", "openvino", purpose="OpenVINO IR")
        queue = self._queues.get(jobs)
        if queue is None:  # kept per jobs: the warm-up's requests are the timed ones
            queue = self._queues[jobs] = ov.AsyncInferQueue(self.compiled, jobs)
            latencies: list[float] = []
            self._latencies[jobs] = latencies
            queue.set_callback(lambda request, _: latencies.append(request.latency / 1000.0))
        data = self._data(feeds)
        for request in queue:
            for i, array in data.items():
                request.set_input_tensor(i, ov.Tensor(array.copy()))
        latencies = self._latencies[jobs]
        latencies.clear()
        begin = time.perf_counter()
        try:
            for started in range(runs):
                if max_seconds is not None and started and time.perf_counter() - begin > max_seconds:
                    break
                queue.start_async()
                if advance is not None:
                    advance()
            queue.wait_all()
        except Exception as e:
            raise InvalidInputError(f"OpenVINO failed to run the model: {ov_message(e)}",
                                    "check that the samples' shapes match the model's inputs") from e
        wall = time.perf_counter() - begin
        return list(latencies), wall

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        data = self._data(feeds)
        try:
            result = self.request.infer(data, share_inputs=True, share_outputs=True)  # outputs copied below
        except Exception as e:
            raise InvalidInputError(f"OpenVINO failed to run the model: {ov_message(e)}",
                                    "check that the samples' shapes match the model's inputs") from e
        return [np.array(result[port]) for port in self.compiled.outputs]


class OpenVinoRuntime(Runtime):
    name = "openvino"
    formats = frozenset({Format.OPENVINO})
    extra = "openvino"
    requires = ("openvino",)
    bench_options = frozenset({"streams", "mode"})

    def load(self, artifact: Artifact, ctx: "StepContext") -> Session:
        """For validation: int8 computed as the model specifies, also on a host whose int8 kernels saturate."""
        compiled = compile_model(read_model(artifact), options_of(ctx), exact_int8=True)
        return OpenVinoSession(compiled, ctx.source.inputs, tuple(ctx.source.output_names))

    def load_tuned(self, artifact: Artifact, ctx: "StepContext", *, mode: str | None = None,  # type: ignore[override]  # named bench_options only
                   streams: int | str | None = None) -> Session:
        """For `bench`: the plugin's own kernels, as deployed. mode: "latency" | "throughput" (PERFORMANCE_HINT);
        streams: NUM_STREAMS (int ≥ 1 or "AUTO")."""
        options = options_of(ctx)
        compiled = compile_model(read_model(artifact), options, mode, streams)
        return OpenVinoSession(compiled, ctx.source.inputs, tuple(ctx.source.output_names))
