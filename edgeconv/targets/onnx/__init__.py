"""The ONNX / CPU family (onnx, onnx-fp16, cpu-* profiles): the hub ONNX itself, normalised and quantized, validated on
ONNX Runtime's CPU provider (edgeconv/runtimes/ort.py, the reference runtime every family shares). Its files:
onnx.toml and cpu.toml."""
