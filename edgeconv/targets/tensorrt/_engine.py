"""Running a serialized TensorRT engine (the tensorrt runtime, and the engine-vs-ONNX Runtime check of
onnx_to_tensorrt): EngineRunner binds numpy feeds to device buffers and executes the engine on a CUDA stream; _Device is
the minimal CUDA buffer layer under it (PyTorch's CUDA tensors when present, else cuda-python).

Nothing here imports tensorrt, torch or cuda at module level.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.errors import InvalidInputError, UnsupportedError
from edgeconv.formats import TensorSpec
from edgeconv.targets.tensorrt import _tools


class EngineRunner:
    """Runs a serialized engine on numpy feeds. Device buffers come from PyTorch (CUDA build) when present, else from
    cuda-python. Engines are executable code: load only engines you built or trust."""

    def __init__(self, engine_path: Path):
        from edgeconv.deps import require

        reason = _tools.why_no_engine()
        if reason:
            raise UnsupportedError(f"cannot run the TensorRT engine {engine_path.name}: {reason}", _tools.INSTALL_HINT)
        trt = require("tensorrt", "tensorrt", purpose="running TensorRT engines")
        self.trt = trt
        self.logger = _tools.trt_logger(trt)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise InvalidInputError(f"TensorRT cannot load {engine_path.name}: "
                                    f"{self.logger.errors[-1] if self.logger.errors else 'not an engine for this GPU/TensorRT'}",
                                    "engines only run on the GPU model and TensorRT version that built them: rebuild "
                                    "with `edgeconv build-engine`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.device = _Device()

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(n)),
                                self.dtype(n).name) for n in self.input_names)

    def _bind(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        self.device.release()
        buffers: dict[str, Any] = {}
        for name in self.input_names:
            if name not in feeds:
                raise InvalidInputError(f"the engine needs input {name}", f"inputs: {', '.join(self.input_names)}")
            host = np.ascontiguousarray(feeds[name], dtype=self.dtype(name))
            self.context.set_input_shape(name, host.shape)
            buffers[name] = self.device.upload(host)
            self.context.set_tensor_address(name, self.device.address(buffers[name]))
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            buffers[name] = self.device.empty(shape, self.dtype(name))
            self.context.set_tensor_address(name, self.device.address(buffers[name]))
        return buffers

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        buffers = self._bind(feeds)
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise UnsupportedError("TensorRT failed to execute the engine", "run with -vv for TensorRT's log")
        self.device.synchronize()
        return [self.device.download(buffers[n]) for n in self.output_names]

    def latency_ms(self, feeds: dict[str, np.ndarray], runs: int = 50, warmup: int = 10) -> dict[str, float]:
        self._bind(feeds)
        for _ in range(warmup):
            self.context.execute_async_v3(self.device.stream_handle)
        self.device.synchronize()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.context.execute_async_v3(self.device.stream_handle)
            self.device.synchronize()
            times.append((time.perf_counter() - started) * 1000)
        return {"p50_ms": round(float(np.percentile(times, 50)), 4), "p90_ms": round(float(np.percentile(times, 90)), 4),
                "mean_ms": round(float(np.mean(times)), 4), "runs": runs}


class _Device:
    """Minimal device memory + stream: torch (CUDA) if it can, else cuda-python."""

    def __init__(self) -> None:
        self.torch = None
        self.allocated: list[Any] = []
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        if self.torch is not None:  # the current stream: uploads (.cuda()) and the engine run are ordered on it
            self.stream = self.torch.cuda.current_stream()
            self.stream_handle = self.stream.cuda_stream
            return
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart
            except ImportError as e:
                raise UnsupportedError("running a TensorRT engine needs CUDA buffers from PyTorch (CUDA build) or "
                                       "cuda-python, and neither is installed", "pip install cuda-python") from e
        self.cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)
        self.allocated = []

    def release(self) -> None:
        """Free the previous run's buffers (torch frees its own)."""
        if self.torch is None:
            for ptr in self.allocated:
                self.cudart.cudaFree(ptr)
            self.allocated.clear()

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise UnsupportedError(f"CUDA error {err}", "check the GPU with nvidia-smi")
        return rest[0] if rest else None

    def upload(self, host: np.ndarray) -> Any:
        if self.torch is not None:
            return self.torch.from_numpy(host).cuda()
        ptr = self._check(self.cudart.cudaMalloc(max(host.nbytes, 1)))
        self.allocated.append(ptr)
        self._check(self.cudart.cudaMemcpy(ptr, host.ctypes.data, host.nbytes,
                                           self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return (ptr, host.shape, host.dtype)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        if self.torch is not None:
            return self.torch.empty(shape, dtype=getattr(self.torch, dtype.name), device="cuda")
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = self._check(self.cudart.cudaMalloc(max(nbytes, 1)))
        self.allocated.append(ptr)
        return (ptr, shape, dtype)

    def address(self, buffer: Any) -> int:
        return int(buffer.data_ptr()) if self.torch is not None else int(buffer[0])

    def synchronize(self) -> None:
        if self.torch is not None:
            self.stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))

    def download(self, buffer: Any) -> np.ndarray:
        if self.torch is not None:
            return buffer.cpu().numpy()
        ptr, shape, dtype = buffer
        host = np.empty(shape, dtype)
        self._check(self.cudart.cudaMemcpy(host.ctypes.data, ptr, host.nbytes,
                                           self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return host
