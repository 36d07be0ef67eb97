"""Latency and throughput of an artifact on the runtime available here (used by `edgeconv bench`), and the context an
artifact needs to be run on its own (used by `bench` and `validate`).

An artifact written by `edgeconv convert` sits beside a manifest.json that names its target, the source model's inputs
(names, layout) and the runtime notes (e.g. the TFLite I/O map); `artifact_context` reads it when it is there, so the
artifact is fed exactly as the validation stage fed it. A bare artifact is run with its own inputs.
"""

from __future__ import annotations


import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.errors import InvalidInputError, UnsupportedError, UsageError
from edgeconv.formats import Artifact, Format, IoMap, TensorSpec, detect, io_note_key

if TYPE_CHECKING:
    from edgeconv.runtimes.base import Runtime

USER_GUIDE = """\
`edgeconv bench` times an artifact on the runtime this machine has for it: ONNX Runtime for .onnx, LiteRT for .tflite,
the QNN HTP simulator for Hexagon context models, OpenVINO's CPU plugin for .xml (a Core ML package or a TensorRT
engine needs macOS or an NVIDIA GPU).

An artifact written by `edgeconv convert` sits beside its manifest.json, which names its target, the source model's
inputs (names, layout) and how the converted model's inputs map to them (e.g. the TFLite layout and int8 scales): bench
and validate read it, so the artifact is fed exactly as it was during validation. A bare artifact (no manifest) is
run with its own inputs, on random data of the declared shapes.

Throughput: by default one inference runs at a time (latency = its time; throughput = batch / latency). `-j N` keeps N
in flight: on OpenVINO through an AsyncInferQueue of N infer requests, on ONNX Runtime as N threads calling run() on
one session (its intra-op thread pool is shared); the other runtimes run one at a time and refuse `-j` above 1. For an
OpenVINO IR `--mode latency|throughput` sets PERFORMANCE_HINT and `--streams N|auto` sets the CPU plugin's NUM_STREAMS
(without -j, the plugin's OPTIMAL_NUMBER_OF_INFER_REQUESTS are kept in flight). The report names the jobs, the mode
and the streams the compiled model really has (the plugin caps streams at what the cores allow); with N in flight the
latency percentiles are per request, under that load, and throughput is batch x completed / wall time."""


@dataclass
class ArtifactContext:
    artifact: Artifact
    target: str | None  # profile name (from the manifest, --target, or the first profile that produces this format)
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    notes: dict[str, Any] = field(default_factory=dict)
    manifest: Path | None = None


def find_manifest(path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """(manifest path, manifest, target record) of the edgeconv output that holds `path`, if any."""
    from edgeconv.manifest import MANIFEST_NAME

    path = path.resolve()
    for folder in list(path.parents)[:3]:
        candidate = folder / MANIFEST_NAME
        if not candidate.is_file():
            continue
        try:
            manifest = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        for target in manifest.get("targets", []):
            for art in target.get("artifacts", []):
                if (folder / art.get("path", "")).resolve() == path:
                    return candidate, manifest, target
    return None


def _recorded_format(manifest_path: Path, record: dict[str, Any], path: Path) -> Format | None:
    for art in record.get("artifacts", []):
        if (manifest_path.parent / art.get("path", "")).resolve() == path.resolve():
            try:
                return Format(art.get("format"))
            except ValueError:
                return None
    return None


def _own_io(artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    from edgeconv.artifact_readers import reader_for

    reader = reader_for(artifact.format)  # its family's reader.py
    if reader is None:
        raise UnsupportedError(f"cannot run a {artifact.format} artifact on its own here",
                               "pass the output of `edgeconv convert` (its manifest.json names the inputs)")
    return reader.io(artifact)


def artifact_context(path: Path, target: str | None = None) -> ArtifactContext:
    artifact = detect(Path(path))
    found = find_manifest(artifact.path)
    if found is not None:
        manifest_path, manifest, record = found
        recorded = _recorded_format(manifest_path, record, artifact.path)
        if recorded is not None and recorded != artifact.format:  # e.g. a QNN EPContext model is ONNX by content
            artifact = Artifact(artifact.path, recorded, artifact.variant, artifact.companions)
        notes = dict(record.get("notes") or {})
        artifact = replace(artifact, io=_recorded_io(notes, artifact.format))
        inputs = tuple(TensorSpec(i["name"], tuple(i["shape"]), i.get("dtype", "float32"))
                       for i in manifest.get("source", {}).get("inputs", []))
        outputs: tuple[str, ...] = ()  # the runtime's notes (e.g. the TFLite I/O map) name them
        if artifact.format == Format.ONNX:  # an ONNX artifact keeps the source's I/O names and layout
            inputs, outputs = _own_io(artifact)
        return ArtifactContext(artifact, target or record.get("target"), inputs, outputs, notes, manifest_path)
    inputs, outputs = _own_io(artifact)
    return ArtifactContext(artifact, target, inputs, outputs)


def _recorded_io(notes: dict[str, Any], fmt: Format) -> IoMap | None:
    """The artifact's I/O map as its conversion recorded it (notes.tflite_io): the runtime feeds it as validation did."""
    data = notes.get(io_note_key(fmt))
    return IoMap.from_json(data) if isinstance(data, dict) else None


def pick_runtime(fmt: Format, name: str | None = None) -> type[Runtime]:
    """The runtime that executes `fmt` here (or the one named), else UnsupportedError naming what is missing."""
    from edgeconv.runtimes import all_runtimes, runtime_named

    if name:
        runtime = runtime_named(name)
        if fmt not in runtime.formats:
            raise UsageError(f"runtime {name} does not run {fmt} files", "leave --runtime out to pick one")
        candidates = [runtime]
    else:
        candidates = [r for r in all_runtimes() if fmt in r.formats]
    if not candidates:
        raise UnsupportedError(f"no runtime runs {fmt} artifacts", "bench runs ONNX and TFLite files (and others where their runtime is installed)")
    for runtime in candidates:
        if runtime.available() and runtime.can_execute_here() is None:
            return runtime
    why = "; ".join(f"{r.name}: " + (f"pip install 'edgeconv[{r.extra}]'" if not r.available() else str(r.can_execute_here()))
                    for r in candidates)
    raise UnsupportedError(f"no runtime can execute {fmt} on this machine ({why})",
                           "benchmark it on the device, or convert for a target whose runtime runs here")


def _profile_for(ctx: ArtifactContext, runtime_name: str = "") -> Any:
    """The artifact's profile: --target, else the manifest's, else the built-in float profile producing its format
    (the one named after the format first: `onnx` for .onnx files)."""
    from edgeconv.targets import builtin_profiles, resolve

    if ctx.target:
        try:
            return resolve(ctx.target)
        except UsageError:
            if ctx.manifest is None:
                raise
            # a user profile file named in an old manifest: fall back to a built-in one
    fmt = ctx.artifact.format
    candidates = [p for p in builtin_profiles() if p.primary_format == fmt
                  and (not runtime_name or p.validate.runtime == runtime_name)]
    if not candidates:
        raise UsageError(f"no built-in target produces {fmt} files", "pass --target NAME (or ./profile.toml)")
    candidates.sort(key=lambda p: (p.name != fmt.value, p.quantize.precision != "fp32", p.name))
    return candidates[0]


def step_context(ctx: ArtifactContext, runtime_name: str, work_dir: Path, **options: Any) -> Any:
    """A StepContext that lets a runtime load `ctx.artifact` outside a conversion."""
    from edgeconv.context import ConvertOptions, StepContext
    from edgeconv.sources import SourceModel

    source = SourceModel(ctx.artifact, ctx.inputs, ctx.output_names, "artifact", None)  # type: ignore[arg-type]  # no loader: runtimes here never open the source
    return StepContext(work_dir, _profile_for(ctx, runtime_name), ConvertOptions(**options), source,
                       notes=dict(ctx.notes))


def concrete_inputs(inputs: tuple[TensorSpec, ...], shapes: dict[str, tuple[int, ...]]) -> tuple[TensorSpec, ...]:
    out = []
    names = [s.name for s in inputs]
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise InvalidInputError(f"--input-shape names {', '.join(unknown)}, but the inputs are: {', '.join(names)}",
                                f"use --input-shape {names[0]}=DIMS" if names else "")
    for spec in inputs:
        dims = shapes.get(spec.name) or tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        out.append(TensorSpec(spec.name, tuple(dims), spec.dtype))
    return tuple(out)


def random_feeds(inputs: tuple[TensorSpec, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]  # concrete_inputs gave every dim a value
        if spec.dtype.startswith(("float", "bfloat")):
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32 if spec.dtype == "bfloat16" else spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 8, shape).astype(spec.dtype)
    return feeds


# runtimes that emulate the target here: their timings say nothing about the device
SIMULATED = {"qnn_htp": "runs on the Hexagon HTP simulator on this CPU: the latency is not the device's"}


@dataclass
class BenchResult:
    artifact: str
    format: str
    runtime: str
    target: str | None
    inputs: dict[str, list[int]]
    batch: int
    warmup: int
    runs: int
    load_s: float
    latency_ms: dict[str, float]  # min, p50, p90, p99, mean, max
    throughput_per_s: float  # samples (batch items) per second
    total_s: float
    note: str = ""
    jobs: int = 1  # inferences kept in flight
    driver: str = "one run() at a time"  # how they were kept in flight
    mode: str | None = None  # OpenVINO PERFORMANCE_HINT of the compiled model (latency / throughput)
    streams: int | None = None  # OpenVINO NUM_STREAMS of the compiled model
    requested: dict[str, Any] = field(default_factory=dict)  # what -j / --streams / --mode asked for
    config: dict[str, Any] = field(default_factory=dict)  # the runtime's own settings (compiled-model properties)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


MODES = ("latency", "throughput")  # --mode: OpenVINO PERFORMANCE_HINT


def parse_streams(value: str | int | None) -> int | str | None:
    """--streams: a count ≥ 1 or `auto` (OpenVINO NUM_STREAMS AUTO) → int | "AUTO" | None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return "AUTO"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"bad --streams {value!r}", "--streams takes a count ≥ 1 or `auto` (OpenVINO NUM_STREAMS)")
    return n


def _check_parallel(runtime_cls: type[Runtime], jobs: int | None, streams: int | str | None, mode: str | None) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"bad -j/--jobs {jobs!r}", "-j takes the number of inferences to keep in flight, ≥ 1")
    if mode is not None and mode not in MODES:
        raise UsageError(f"bad --mode {mode!r}", f"--mode is one of {', '.join(MODES)} (OpenVINO PERFORMANCE_HINT)")
    what = {"streams": "--streams (OpenVINO NUM_STREAMS)", "mode": "--mode (OpenVINO PERFORMANCE_HINT)"}
    refused = [what[o] for o, v in (("streams", streams), ("mode", mode))
               if v is not None and o not in runtime_cls.bench_options]
    if refused:
        raise UsageError(f"{' and '.join(refused)}: {runtime_cls.name} has no such setting",
                         "leave it out (-j works on ONNX Runtime too), or bench an OpenVINO .xml "
                         "(convert with -t openvino-fp32)")


def _parallel_ok(session: Any) -> bool:
    from edgeconv.runtimes.base import Session

    return session.thread_safe_run or type(session).run_parallel is not Session.run_parallel


def benchmark(path: Path, *, runs: int = 50, warmup: int = 5, input_shapes: dict[str, tuple[int, ...]] | None = None,
              runtime: str | None = None, target: str | None = None, reporter: Any = None,
              max_seconds: float | None = None, jobs: int | None = None, streams: str | int | None = None,
              mode: str | None = None) -> BenchResult:
    """Run the artifact `warmup` times (not timed), then `runs` times, timing each call. jobs / streams / mode: keep
    that many inferences in flight (the runtime's asynchronous API or threads), with OpenVINO's NUM_STREAMS and
    PERFORMANCE_HINT; without any, one run() at a time."""
    from edgeconv.progress import NullReporter

    if runs < 1 or warmup < 0:
        raise UsageError(f"bad --runs {runs} / --warmup {warmup}", "--runs must be ≥ 1 and --warmup ≥ 0")
    streams = parse_streams(streams)
    mode = mode.lower() if isinstance(mode, str) else mode
    reporter = reporter or NullReporter()
    actx = artifact_context(Path(path), target)
    runtime_cls = pick_runtime(actx.artifact.format, runtime)
    _check_parallel(runtime_cls, jobs, streams, mode)
    inputs = concrete_inputs(actx.inputs, input_shapes or {})
    actx.inputs = inputs
    requested = {k: v for k, v in (("jobs", jobs), ("streams", streams), ("mode", mode)) if v is not None}
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-") as tmp:
        ctx = step_context(actx, runtime_cls.name, Path(tmp))
        started = time.perf_counter()
        settings = {k: v for k, v in (("streams", streams), ("mode", mode)) if v is not None}
        session = runtime_cls().load_tuned(actx.artifact, ctx, **settings)  # as deployed (load() is for validation)
        load_s = time.perf_counter() - started
        config = session.config()
        parallel = bool(requested)
        if parallel and jobs is None:  # --streams / --mode alone: as many requests as the plugin says it wants
            jobs = int(config.get("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1)
        jobs = jobs or 1
        if parallel and not _parallel_ok(session):
            if jobs > 1:
                raise UsageError(f"`-j` is for OpenVINO (AsyncInferQueue) and ONNX Runtime (concurrent run() calls): "
                                 f"{runtime_cls.name} runs one inference at a time here", "leave -j out (or -j 1)")
            parallel = False
        feeds = random_feeds(inputs)
        if parallel:
            driver = session.parallel_driver(jobs)
            with reporter.task(f"warm-up ({runtime_cls.name}, {jobs} in flight)", total=None) as task:
                if warmup:
                    session.run_parallel(feeds, jobs, max(warmup, jobs))  # every request (thread) runs at least once
            with reporter.task(f"benchmarking {actx.artifact.path.name} ({jobs} in flight)", total=runs) as task:
                times, total = session.run_parallel(feeds, jobs, runs, max_seconds, task.advance)
        else:
            driver = BenchResult.driver
            with reporter.task(f"warm-up ({runtime_cls.name})", total=warmup) as task:
                for _ in range(warmup):
                    session.run(feeds)
                    task.advance()
            times = []
            begin = time.perf_counter()
            with reporter.task(f"benchmarking {actx.artifact.path.name}", total=runs) as task:
                for _ in range(runs):
                    t0 = time.perf_counter()
                    session.run(feeds)
                    times.append(time.perf_counter() - t0)
                    task.advance()
                    if max_seconds is not None and time.perf_counter() - begin > max_seconds:
                        break
            total = time.perf_counter() - begin
    ms = np.asarray(times) * 1000.0
    first = inputs[0].shape if inputs else ()
    batch = int(first[0]) if first else 1  # type: ignore[arg-type]  # concrete_inputs gave every dim a value
    latency = {"min": float(ms.min()), "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
               "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "max": float(ms.max())}
    if parallel:  # N in flight: completed per second of wall time
        throughput = batch * len(times) / total if total > 0 else float("inf")
    else:
        throughput = batch * len(times) / sum(times) if sum(times) > 0 else float("inf")
    hint = config.get("PERFORMANCE_HINT")
    n_streams = config.get("NUM_STREAMS")
    notes = [SIMULATED.get(runtime_cls.name, "")]
    if isinstance(streams, int) and isinstance(n_streams, int) and n_streams != streams:
        notes.append(f"asked for {streams} streams: the plugin made {n_streams} "
                     f"({config.get('INFERENCE_NUM_THREADS', '?')} inference threads here)")
    return BenchResult(str(actx.artifact.path), actx.artifact.format.value, runtime_cls.name, actx.target,
                       {s.name: [int(d) for d in s.shape] for s in inputs}, batch, warmup, len(times),  # type: ignore[arg-type]  # concrete dims
                       round(load_s, 4), {k: round(v, 4) for k, v in latency.items()},
                       round(throughput, 2), round(total, 4), "; ".join(n for n in notes if n),
                       jobs, driver, str(hint).lower() if hint else None,
                       n_streams if isinstance(n_streams, int) else None, requested, config)
