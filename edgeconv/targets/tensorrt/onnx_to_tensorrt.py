"""ONNX (TensorRT-ready: float32, float16 or explicit int8 Q/DQ) → serialized TensorRT engine, with the TensorRT Python
API, one optimisation profile from --shape-range, and a timing cache next to the engine (reused by the next build).

Without an NVIDIA GPU (or without the `tensorrt` package) the engine cannot be built: the converter still checks the
TensorRT-ready ONNX (valid graph, symmetric int8 Q/DQ, shape ranges), then raises StepSkipped, so the run writes that
ONNX, validates it on ONNX Runtime, marks the engine "not built" in the manifest and exits 0; with --require-engine it
fails with exit 4 instead. `edgeconv build-engine MODEL.onnx` builds the engine later, on the GPU machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeconv.context import ShapeRange, StepContext
from edgeconv.targets.tensorrt import _tools as trt_tools
from edgeconv.converters.base import Converter
from edgeconv.errors import StepSkipped, UnsupportedError
from edgeconv.formats import Artifact, Format
from edgeconv.onnx_graph import stem_of
from edgeconv.targets.family_options import Table, parse_options
from edgeconv.targets.tensorrt.options import TensorRtOptions, parse

log = logging.getLogger(__name__)
COMPARE_SAMPLES = 8


class OnnxToTensorRT(Converter):
    name = "onnx_to_tensorrt"
    source = Format.ONNX
    target = Format.TENSORRT_ENGINE
    extra = "tensorrt"
    requires = ("onnx",)  # tensorrt itself is checked in convert(): without it the engine is "not built", not an error
    cost = 10
    stage = "compile"
    cacheable = False  # the engine is built for (and only runs on) this machine's GPU; without one it is skipped

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        facts = trt_tools.check_tensorrt_ready(artifact.path)
        inputs = [trt_tools.TensorSpec(i["name"], tuple(i["shape"])) for i in facts["inputs"]]
        ranges = trt_tools.resolve_shape_ranges(inputs, dict(ctx.options.shape_ranges), ctx.warn)
        stem = stem_of(ctx.source.artifact.path)
        notes: dict[str, Any] = {"onnx": facts, "compiler": dict(ctx.profile.compiler),
                                 "shape_ranges": {n: [list(r.min), list(r.opt), list(r.max)] for n, r in ranges.items()}}
        ctx.notes[trt_tools.NOTES_KEY] = notes
        reason = trt_tools.why_no_engine()
        if reason is not None:
            later = trt_tools.build_later_command(f"OUTDIR/{ctx.profile.name}/{stem}.onnx", ranges)
            notes.update({"engine": "not built", "reason": reason, "gpu": trt_tools.detect_gpu().to_json(),
                          "build_later": later})
            if ctx.options.require_engine:
                raise UnsupportedError(f"{ctx.profile.name}: the TensorRT engine cannot be built here: {reason}",
                                       f"run on a machine with an NVIDIA GPU ({trt_tools.INSTALL_HINT}), or drop "
                                       "--require-engine to get the TensorRT-ready ONNX now and build it later with "
                                       f"`{later}`", details={"tensorrt": notes})
            raise StepSkipped(f"TensorRT engine not built: {reason}. The TensorRT-ready ONNX was written and validated "
                              f"on ONNX Runtime; build the engine on a GPU machine with `{later}`",
                              "pass --require-engine to make this an error (exit 4)")
        engine = ctx.work_dir / f"{stem}.engine"
        with ctx.reporter.task("building the TensorRT engine", total=None):
            built = trt_tools.build_engine(artifact.path, engine, ranges, parse(ctx.profile),
                                           ctx.work_dir / f"{stem}.timing.cache")
        notes.update({"engine": "built", "build_s": built.seconds, "timing_cache_reused": built.timing_cache_reused,
                      "engine_bytes": engine.stat().st_size, "optimisation_profile": built.profile,
                      **trt_tools.versions(built.tensorrt)})
        if built.warnings:
            notes["builder_warnings"] = built.warnings
        notes["vs_onnxruntime"] = compare_with_ort(engine, artifact, ctx)
        return Artifact(engine, Format.TENSORRT_ENGINE, companions=(built.timing_cache,))


def build_engine_file(onnx_path: Path, engine_path: Path, *, shape_ranges: dict[str, ShapeRange] | None = None,
                      compiler: dict[str, Any] | None = None, timing_cache: Path | None = None) -> dict[str, Any]:
    """`edgeconv build-engine`: the same checks and build as the converter, for a TensorRT-ready ONNX written earlier
    (on a CPU machine). The engine and its timing cache appear atomically (temp file, then rename)."""
    import os

    facts = trt_tools.check_tensorrt_ready(onnx_path)
    inputs = [trt_tools.TensorSpec(i["name"], tuple(i["shape"])) for i in facts["inputs"]]
    warnings: list[str] = []
    ranges = trt_tools.resolve_shape_ranges(inputs, dict(shape_ranges or {}), warnings.append)
    reason = trt_tools.why_no_engine()
    if reason is not None:
        raise UnsupportedError(f"cannot build the TensorRT engine here: {reason}",
                               f"run this command on the machine with the NVIDIA GPU the engine is for ({trt_tools.INSTALL_HINT})",
                               details={"gpu": trt_tools.detect_gpu().to_json()})
    timing_cache = timing_cache or engine_path.with_name(engine_path.name.removesuffix(".engine") + ".timing.cache")
    tmp_engine = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    try:
        options = parse_options(TensorRtOptions, compiler or {}, Table("compiler", onnx_path.name, str(onnx_path)))
        built = trt_tools.build_engine(onnx_path, tmp_engine, ranges, options, timing_cache)
        os.replace(tmp_engine, engine_path)
    finally:
        tmp_engine.unlink(missing_ok=True)
    return {"engine": str(engine_path), "timing_cache": str(timing_cache), "build_s": built.seconds,
            "timing_cache_reused": built.timing_cache_reused, "engine_bytes": engine_path.stat().st_size,
            "optimisation_profile": built.profile, "onnx": facts, "warnings": warnings + built.warnings,
            **trt_tools.versions(built.tensorrt)}


def compare_with_ort(engine: Any, onnx_artifact: Artifact, ctx: StepContext) -> dict[str, Any]:
    """Engine vs ONNX Runtime (CPU) on the same TensorRT-ready ONNX: isolates TensorRT's own error from the
    quantization error that validation against the source includes. Also the engine's latency."""
    from edgeconv.quantizers.calibration import RANDOM, open_samples
    from edgeconv.runtimes.ort import OrtSession, cpu_session
    from edgeconv.targets.tensorrt._engine import EngineRunner
    from edgeconv.validation import compare

    runner = EngineRunner(engine)
    ort = OrtSession(cpu_session(str(onnx_artifact.path)), ctx.source.inputs)
    spec = ctx.options.eval or (ctx.options.calib if ctx.options.calib != RANDOM else None)
    samples = open_samples(spec, ctx.source.inputs, COMPARE_SAMPLES, seed=ctx.options.seed + 2, purpose="engine check")
    refs, outs, first = [], [], None
    for feeds in samples:
        first = first or feeds
        refs.append(ort.run(feeds))
        by_name = dict(zip(runner.output_names, runner.run(feeds)))
        outs.append([by_name[n] for n in ort.output_names])
    metrics = compare(list(ort.output_names), refs, outs).to_json()
    return {"metrics": metrics, "samples": len(refs), "latency": runner.latency_ms(first) if first else {}}
