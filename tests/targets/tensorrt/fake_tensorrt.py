"""A stand-in for the `tensorrt` and `cuda-python` modules, for tests of edgeconv's GPU *plumbing* on machines without
a GPU: the fake "engine" runs the ONNX it was built from on ONNX Runtime, device memory is host memory. It checks the
orchestration (build → timing cache → run → compare → validate → manifest), never the real TensorRT API, which only the
`gpu`-marked tests exercise."""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import json
import types

import numpy as np
import onnxruntime as ort

MEM: dict[int, bytearray] = {}
cudart = types.ModuleType("cuda.bindings.runtime")
class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
cudart.cudaMemcpyKind = cudaMemcpyKind
NEXT = [0x1000]
def cudaMalloc(n):
    NEXT[0] += 0x100000; ptr = NEXT[0]; MEM[ptr] = bytearray(n); return (0, ptr)
def cudaMemcpy(dst, src, n, kind):
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        MEM[dst][:n] = ctypes.string_at(src, n)
    else:
        buf = (ctypes.c_char * n).from_buffer(MEM[src]); ctypes.memmove(dst, buf, n)
    return (0,)
cudart.cudaMalloc, cudart.cudaMemcpy = cudaMalloc, cudaMemcpy
cudart.cudaStreamCreate = lambda: (0, 7)
cudart.cudaFree = lambda ptr: (MEM.pop(ptr, None), 0)[1:]
cudart.cudaStreamSynchronize = lambda s: (0,)
cudart.cudaRuntimeGetVersion = lambda: (0, 13000)
cuda = types.ModuleType("cuda"); bindings = types.ModuleType("cuda.bindings"); bindings.runtime = cudart; cuda.bindings = bindings

trt = types.ModuleType("tensorrt"); trt.__version__ = "11.4.0.106"
class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0; ERROR = 1; WARNING = 2; INFO = 3; VERBOSE = 4
class ILogger:
    Severity = Severity
    def __init__(self): pass
trt.ILogger = ILogger
trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
trt.BuilderFlag = types.SimpleNamespace(TF32=1)
class TensorIOMode(enum.Enum):
    INPUT = 1; OUTPUT = 2
trt.TensorIOMode = TensorIOMode
trt.nptype = lambda dt: np.float32
CALLS = []
class Tensor:
    def __init__(self, name, shape): self.name, self.shape = name, shape
class Network:
    def __init__(self): self.inputs, self.path = [], None
    num_inputs = property(lambda self: len(self.inputs))
    def get_input(self, i): return self.inputs[i]
class OnnxParser:
    def __init__(self, network, logger): self.network, self.num_errors = network, 0
    def parse_from_file(self, path):
        import onnx
        m = onnx.load(path); self.network.path = path
        self.network.inputs = [Tensor(i.name, tuple(d.dim_value if d.dim_value > 0 else -1 for d in i.type.tensor_type.shape.dim)) for i in m.graph.input]
        return True
    def get_error(self, i): return "err"
trt.OnnxParser = OnnxParser
class Cache:
    def __init__(self, blob): self.blob = blob
    def serialize(self): return memoryview(b"CACHE" + bytes(self.blob)[:16])
class Config:
    def set_memory_pool_limit(self, kind, n): CALLS.append(("workspace", n))
    def clear_flag(self, f): CALLS.append(("clear_flag", f))
    def add_optimization_profile(self, p): CALLS.append(("profile", p.shapes))
    def create_timing_cache(self, blob): CALLS.append(("cache_in", len(blob))); self.cache = Cache(blob); return self.cache
    def set_timing_cache(self, c, ignore): pass
    def get_timing_cache(self): return self.cache
class Profile:
    def __init__(self): self.shapes = {}
    def set_shape(self, name, mn, opt, mx): self.shapes[name] = (mn, opt, mx)
class Builder:
    def __init__(self, logger): pass
    def create_network(self, flags): CALLS.append(("flags", flags)); return Network()
    def create_builder_config(self): return Config()
    def create_optimization_profile(self): return Profile()
    def build_serialized_network(self, network, config): return memoryview(json.dumps({"onnx": network.path}).encode())
trt.Builder = Builder
class Context:
    def __init__(self, engine): self.e, self.shapes, self.addr = engine, {}, {}
    def set_input_shape(self, name, shape): self.shapes[name] = tuple(shape); return True
    def get_tensor_shape(self, name):
        feeds = {i.name: np.zeros(self.shapes[i.name], np.float32) for i in self.e.sess.get_inputs()}
        outs = dict(zip(self.e.outs, self.e.sess.run(None, feeds))); return outs[name].shape
    def set_tensor_address(self, name, ptr): self.addr[name] = ptr; return True
    def execute_async_v3(self, stream):
        feeds = {}
        for n in self.e.ins:
            shape = self.shapes[n]; nbytes = int(np.prod(shape)) * 4
            feeds[n] = np.frombuffer(bytes(MEM[self.addr[n]][:nbytes]), np.float32).reshape(shape)
        for n, v in zip(self.e.outs, self.e.sess.run(None, feeds)):
            b = np.ascontiguousarray(v, np.float32).tobytes(); MEM[self.addr[n]][:len(b)] = b
        return True
class Engine:
    def __init__(self, path):
        self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.ins = [i.name for i in self.sess.get_inputs()]; self.outs = [o.name for o in self.sess.get_outputs()]
    num_io_tensors = property(lambda self: len(self.ins) + len(self.outs))
    def get_tensor_name(self, i): return (self.ins + self.outs)[i]
    def get_tensor_mode(self, n): return TensorIOMode.INPUT if n in self.ins else TensorIOMode.OUTPUT
    def get_tensor_dtype(self, n): return "float"
    def get_tensor_shape(self, n):
        i = {x.name: x for x in self.sess.get_inputs() + self.sess.get_outputs()}[n]
        return tuple(d if isinstance(d, int) else -1 for d in i.shape)
    def create_execution_context(self): return Context(self)
class Runtime:
    def __init__(self, logger): pass
    def deserialize_cuda_engine(self, blob): return Engine(json.loads(bytes(blob))["onnx"])
trt.Runtime = Runtime



def modules() -> dict[str, types.ModuleType]:
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart)):
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}
