"""The Apple Core ML family (coreml-* and ane-* profiles): PyTorch, Keras, SavedModel and ONNX (through onnx2torch) →
.mlpackage with coremltools. Validated on the Core ML runtime on macOS, elsewhere on a NumPy MIL reference executor.
Its modules: torch_to_coreml.py, keras_to_coreml.py, savedmodel_to_coreml.py, onnx_to_coreml.py (the edges),
runtime.py, compression.py (coremltools weight compression), _convert.py (shared finishing steps), _loader.py
(coremltools imported quietly), _torch_ops.py (coremltools op fixes), _spec.py (package reader), _mil_reference.py (the
reference executor), profiles.toml."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"coremltools": "coremltools"}
EXTRA = "coreml"
