"""OpenVINO target family (Intel CPUs, iGPUs and NPUs): ONNX → OpenVINO IR (.xml + .bin), fp32 / fp16 weights /
int8 weights only (NNCF compress_weights) / full int8 (NNCF post-training quantization), validated on the OpenVINO
CPU plugin. Its modules: onnx_to_openvino.py (the edge), runtime.py, options.py ([compiler] keys), profiles.toml.
Registered by discovery like every plugin (registry.FAMILIES); openvino and nncf are imported only inside functions."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"openvino": "openvino", "nncf": "nncf"}
EXTRA = "openvino"
