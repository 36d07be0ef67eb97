"""The NVIDIA TensorRT family (tensorrt-* profiles): ONNX → TensorRT-ready ONNX (explicit Q/DQ or fp16) → engine on a
GPU. Its modules: onnx_to_tensorrt.py (the edge), runtime.py (engine runner, ONNX Runtime without a GPU), qdq.py (the Q/DQ
placement TensorRT fuses, `[quantize.options] placement = "tensorrt"`), _tools.py (GPU detection, shape ranges, engine
build), _engine.py (engine runner and CUDA buffers), profiles.toml."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"tensorrt": "tensorrt"}
EXTRA = "tensorrt"
