"""TensorRT helpers shared by the onnx_to_tensorrt converter, the tensorrt runtime and `edgeconv build-engine`: GPU
detection, shape ranges, the shared timing cache and the engine build (running an engine: _engine.py).

Nothing here imports tensorrt at module level. GPU detection loads the CUDA driver library (libcuda.so.1) with ctypes,
so it costs a millisecond, needs no Python CUDA package and also works on Jetson boards without nvidia-smi.

TensorRT 11 builds strongly typed networks only (BuilderFlag.FP16 / INT8 are gone): the precision comes from the ONNX
(Q/DQ nodes, float16 tensors), which the quantize stage wrote. On TensorRT 10.x (still what JetPack ships) the
STRONGLY_TYPED creation flag asks for the same behaviour; on 11.x it is accepted and ignored, so it is always set.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeconv.context import ShapeRange
from edgeconv.errors import UnsupportedError, UsageError, first_line
from edgeconv.formats import TensorSpec

if TYPE_CHECKING:
    from edgeconv.targets.tensorrt.options import TensorRtOptions

log = logging.getLogger(__name__)
NOTES_KEY = "tensorrt"
INSTALL_HINT = "pip install 'edgeconv[tensorrt]' on a machine with an NVIDIA GPU and driver"
# CUdevice_attribute values (cuda.h): compute capability major / minor.
_CC_MAJOR, _CC_MINOR = 75, 76


@dataclass(frozen=True)
class GpuInfo:
    available: bool
    reason: str = ""  # why not, when not available
    name: str = ""
    count: int = 0
    compute_capability: str = ""
    cuda_driver_api: str = ""  # the CUDA version the driver supports, e.g. "13.0"
    driver_version: str = ""  # from nvidia-smi, when present

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0) or k == "available"}


def _load_libcuda() -> Any:
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@lru_cache(maxsize=1)
def detect_gpu() -> GpuInfo:
    """Is there an NVIDIA GPU this process can use? Never imports tensorrt, torch or cuda-python."""
    if os.environ.get("EDGECONV_NO_GPU"):  # lets a GPU machine exercise the CPU-only path
        return GpuInfo(False, "EDGECONV_NO_GPU is set")
    lib = _load_libcuda()
    if lib is None:
        return GpuInfo(False, "no NVIDIA GPU driver on this machine (libcuda.so.1 not found)")
    try:
        rc = lib.cuInit(0)
        if rc != 0:
            return GpuInfo(False, f"the NVIDIA driver is installed but cuInit failed (CUDA error {rc}): no usable GPU")
        count = ctypes.c_int(0)
        lib.cuDeviceGetCount(ctypes.byref(count))
        if count.value < 1:
            return GpuInfo(False, "the NVIDIA driver is installed but reports no GPU")
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, 0)
        version = ctypes.c_int(0)
        lib.cuDriverGetVersion(ctypes.byref(version))
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, 0)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, 0)
    except (AttributeError, OSError) as e:
        return GpuInfo(False, f"the CUDA driver library could not be queried: {e}")
    return GpuInfo(True, "", name.value.decode(errors="replace"), count.value, f"{major.value}.{minor.value}",
                   f"{version.value // 1000}.{(version.value % 1000) // 10}", _nvidia_smi_driver())


def _nvidia_smi_driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out[0].strip() if out else ""


def why_no_engine() -> str | None:
    """None if a TensorRT engine can be built and run here, else the reason (GPU first: it is the usual one)."""
    from edgeconv.deps import is_installed

    gpu = detect_gpu()
    if not gpu.available:
        return f"building a TensorRT engine needs an NVIDIA GPU: {gpu.reason}"
    if not is_installed("tensorrt"):
        return f"the tensorrt package is not installed ({INSTALL_HINT})"
    return None


def build_later_command(onnx_name: str, ranges: dict[str, ShapeRange]) -> str:
    flags = "".join(f" --shape-range {n}={dims_str(r.min)}:{dims_str(r.opt)}:{dims_str(r.max)}" for n, r in ranges.items())
    return f"edgeconv build-engine {onnx_name}{flags}"


def dims_str(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


# ----------------------------------------------------------------------------------------------------------- checks
def check_tensorrt_ready(path: Path) -> dict[str, Any]:
    """What TensorRT's ONNX parser needs that ORT does not: a checker-valid graph, symmetric int8 Q/DQ (zero point 0,
    no quantized bias, per-tensor activation scales). Raises UnsupportedError (exit 4) listing the problems."""
    import onnx

    from edgeconv.normalise import default_opset
    from edgeconv.onnx_graph import io_specs
    from edgeconv.targets.tensorrt import qdq as tensorrt_qdq

    model = onnx.load_model(str(path))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise UnsupportedError(f"the TensorRT-ready ONNX is not valid ONNX: {first_line(e)}", "this is a bug") from e
    qdq = tensorrt_qdq.describe(model)
    elem = onnx.TensorProto
    fp16 = sum(i.data_type == elem.FLOAT16 for i in model.graph.initializer)
    fp32 = sum(i.data_type == elem.FLOAT for i in model.graph.initializer)
    io_types = {v.name: elem.DataType.Name(v.type.tensor_type.elem_type).lower()
                for v in [*model.graph.input, *model.graph.output]}
    facts = {"opset": default_opset(model), "nodes": len(model.graph.node), "qdq": qdq,
             "initializers": {"float16": fp16, "float32": fp32}, "io_types": io_types,
             "inputs": [{"name": s.name, "shape": list(s.shape)} for s in io_specs(model).inputs]}
    if qdq["problems"]:
        raise UnsupportedError(f"the ONNX has Q/DQ nodes TensorRT cannot build: {'; '.join(qdq['problems'][:5])}",
                               "use the tensorrt-int8 profile (symmetric int8, placement = \"tensorrt\")",
                               details={"tensorrt": facts})
    return facts


def resolve_shape_ranges(inputs: list[TensorSpec], given: dict[str, ShapeRange], warn: Any = None) -> dict[str, ShapeRange]:
    """One optimisation profile: --shape-range for dynamic inputs (checked against the model), min = opt = max = 1 for
    a dynamic dim nobody gave a range for (with a warning). Static inputs need no range; a given one must match."""
    by_name = {s.name: s for s in inputs}
    unknown = [n for n in given if n not in by_name]
    if unknown:
        raise UsageError(f"--shape-range names unknown input(s): {', '.join(unknown)}",
                         f"the model's inputs are: {', '.join(by_name) or '(none)'}")
    ranges: dict[str, ShapeRange] = {}
    for spec in inputs:
        r = given.get(spec.name)
        if r is None:
            if spec.is_static:
                continue
            dims = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
            if warn is not None:
                warn(f"input {spec.name} [{spec.shape_str()}] has dynamic dims and no --shape-range: the engine is "
                     f"built for {dims_str(dims)} only (pass --shape-range {spec.name}=MIN:OPT:MAX)")
            ranges[spec.name] = ShapeRange(dims, dims, dims)
            continue
        for label, dims in (("min", r.min), ("opt", r.opt), ("max", r.max)):
            if len(dims) != len(spec.shape):
                raise UsageError(f"--shape-range {spec.name}: {label} {dims_str(dims)} has {len(dims)} dims, the input "
                                 f"has {len(spec.shape)} [{spec.shape_str()}]", "give every dim, e.g. 1x3x224x224")
            for i, (d, model_dim) in enumerate(zip(dims, spec.shape)):
                if isinstance(model_dim, int) and model_dim > 0 and d != model_dim:
                    raise UsageError(f"--shape-range {spec.name}: dim {i} is fixed to {model_dim} in the model, the "
                                     f"range gives {d}", "export the model with that dim dynamic, or keep it fixed")
        if not all(a <= b <= c for a, b, c in zip(r.min, r.opt, r.max)):
            raise UsageError(f"--shape-range {spec.name}: need min <= opt <= max in every dim",
                             f"got {dims_str(r.min)}:{dims_str(r.opt)}:{dims_str(r.max)}")
        ranges[spec.name] = r
    return ranges


# ------------------------------------------------------------------------------------------------------ timing cache
def cache_dir() -> Path:
    from edgeconv.stage_cache import cache_root

    return cache_root() / "tensorrt"


def shared_timing_cache(trt_version: str, gpu: GpuInfo) -> Path:
    """Timing caches are specific to the GPU and the TensorRT version: one shared file per pair."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu.name).strip("-").lower() or "gpu"
    return cache_dir() / f"timing-trt{trt_version}-{slug}-sm{gpu.compute_capability.replace('.', '')}.cache"


def versions(trt_version: str | None = None) -> dict[str, Any]:
    """GPU, driver, CUDA and TensorRT versions (an engine only runs where these match)."""
    gpu = detect_gpu()
    out: dict[str, Any] = {"gpu": gpu.to_json()}
    if trt_version:
        out["tensorrt"] = trt_version
    runtime = _cuda_runtime_version()
    if runtime:
        out["cuda_runtime"] = runtime
    return out


def _cuda_runtime_version() -> str:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            cudart = None
    if cudart is not None:
        err, version = cudart.cudaRuntimeGetVersion()
        if int(err) == 0:
            return f"{version // 1000}.{(version % 1000) // 10}"
    try:
        import torch

        return str(torch.version.cuda or "")
    except ImportError:
        return ""


# ------------------------------------------------------------------------------------------------------------ build
@dataclass
class BuildResult:
    engine: Path
    timing_cache: Path
    seconds: float
    tensorrt: str
    timing_cache_reused: bool
    profile: dict[str, list[list[int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def trt_logger(trt: Any) -> Any:
    class Collecting(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(msg)
            log.debug("tensorrt: %s", msg)

    return Collecting()


def build_engine(onnx_path: Path, engine_path: Path, ranges: dict[str, ShapeRange], options: "TensorRtOptions",
                 timing_cache: Path) -> BuildResult:
    """Parse the ONNX, build a serialized engine with one optimisation profile, reuse and update `timing_cache` (and
    the shared per-GPU cache). Raises UnsupportedError (exit 4) with the parser's / builder's errors."""
    from edgeconv.deps import require

    trt = require("tensorrt", "tensorrt", purpose="building TensorRT engines")
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(strongly_typed) if strongly_typed is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from a file: external weight files beside it are found
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise UnsupportedError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[0] if errors else '?'}",
                               "the op or data type is not supported by this TensorRT version; see docs/targets/tensorrt.md",
                               details={"parser_errors": errors[:20]})
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if options.tf32 is False and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # float32 engines compute in true fp32
    profile_json: dict[str, list[list[int]]] = {}
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if any(d < 0 for d in network.get_input(i).shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            r = ranges.get(tensor.name)
            if r is None:
                raise UsageError(f"input {tensor.name} has dynamic dims {tuple(tensor.shape)} and no shape range",
                                 f"pass --shape-range {tensor.name}=MIN:OPT:MAX")
            profile.set_shape(tensor.name, r.min, r.opt, r.max)
            profile_json[tensor.name] = [list(r.min), list(r.opt), list(r.max)]
        config.add_optimization_profile(profile)
    gpu = detect_gpu()
    shared = shared_timing_cache(trt.__version__, gpu)
    source = timing_cache if timing_cache.is_file() else shared if shared.is_file() else None
    blob = source.read_bytes() if source is not None else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, False)
    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if plan is None:
        raise UnsupportedError(f"TensorRT could not build an engine for {onnx_path.name}: "
                               f"{logger.errors[-1] if logger.errors else 'see the log (-vv)'}",
                               "check the shape ranges and the workspace size (--set compiler.workspace_mib=4096)",
                               details={"builder_errors": logger.errors[-20:]})
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(memoryview(plan)))
    serialized = bytes(memoryview(config.get_timing_cache().serialize()))
    timing_cache.write_bytes(serialized)
    try:
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared.with_name(shared.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(serialized)
        os.replace(tmp, shared)
    except OSError as e:  # the shared cache is an optimisation only
        log.debug("could not update the shared timing cache %s: %s", shared, e)
    return BuildResult(engine_path, timing_cache, round(seconds, 3), trt.__version__, source is not None, profile_json,
                       logger.warnings[-10:])
