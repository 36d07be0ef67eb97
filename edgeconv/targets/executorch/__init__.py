"""ExecuTorch target family (PyTorch's on-device runtime; XNNPACK on Arm / x86 CPUs): PyTorch → .pte with
torch.export → to_edge_transform_and_lower(XnnpackPartitioner) → to_executorch; int8 by PT2E with XNNPACKQuantizer
calibrated on edgeconv's calibration data. Validated by running the .pte with executorch.runtime. Modules:
torch_to_executorch.py (the edge), xnnpack_partitioner.py, runtime.py, options.py ([compiler] keys), profiles.toml."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"executorch": "executorch", "torchao": "torchao"}
EXTRA = "executorch"
