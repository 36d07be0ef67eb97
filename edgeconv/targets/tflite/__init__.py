"""The LiteRT / TFLite family (tflite-* profiles: CPU/XNNPACK, GPU delegate, NNAPI): Keras, SavedModel and ONNX (through
onnx2tf) → .tflite with TFLiteConverter, validated on the LiteRT interpreter. Its modules: keras_to_tflite.py,
savedmodel_to_tflite.py, onnx_to_tflite.py (the edges), runtime.py (LiteRT), _convert.py (TFLiteConverter and its
quantization), _isolated.py (full-integer conversion in a child process), ops.py (.tflite operator reader, public),
profiles.toml."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"onnx2tf": "onnx2tf", "ai-edge-litert": "ai_edge_litert"}
EXTRA = "tflite"
