"""Read an .mlpackage without the Core ML runtime (works on Linux): I/O, MIL ops, how each weight is stored, and which
ops are not known to run on the Apple Neural Engine.

The Neural Engine op set is NOT published by Apple. `ANE_OPS` below is a heuristic allow-list of MIL op types that are
generally placed on the ANE when in float16 with static shapes, compiled from Apple's "Deploying Transformers on the
Apple Neural Engine" (apple/ml-ane-transformers), the coremltools op reference and the community's experiments
(github.com/hollance/neural-engine, docs/unsupported-layers.md). Core ML decides placement on the device; on macOS
14.4+ the real per-op placement is available from coremltools.models.compute_plan.MLComputePlan (see
targets/coreml/runtime.py). Treat a report from here as "worth checking", not as the truth.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Weight decompression ops (run once at load time) → compression kind.
COMPRESSION_OPS = {
    "constexpr_affine_dequantize": "linear",  # iOS16/17 int8/uint8 weights
    "constexpr_blockwise_shift_scale": "linear",  # iOS18 int4/int8 weights
    "constexpr_lut_to_dense": "palettized",
    "constexpr_sparse_to_dense": "sparse",
    "constexpr_cast": "cast",
    "constexpr_lut_to_sparse": "palettized+sparse",
    "constexpr_sparse_blockwise_shift_scale": "linear+sparse",
}

ANE_OPS = frozenset({
    # compute
    "conv", "conv_transpose", "linear", "matmul", "scaled_dot_product_attention",
    # elementwise
    "add", "sub", "mul", "real_div", "maximum", "minimum", "abs", "sqrt", "rsqrt", "square", "inverse", "exp", "pow",
    # activations
    "relu", "relu6", "leaky_relu", "prelu", "sigmoid", "sigmoid_hard", "silu", "gelu", "tanh", "elu", "softplus",
    "softmax", "clip", "scaled_tanh", "thresholded_relu", "linear_activation",
    # pooling / normalisation
    "max_pool", "avg_pool", "l2_pool", "batch_norm", "instance_norm", "layer_norm", "l2_norm", "local_response_norm",
    "reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_l2_norm",
    # layout
    "reshape", "transpose", "concat", "split", "slice_by_index", "slice_by_size", "squeeze", "expand_dims", "pad",
    "upsample_nearest_neighbor", "upsample_bilinear", "resize_bilinear", "resize_nearest_neighbor", "pixel_shuffle",
    "space_to_depth", "depth_to_space", "tile", "identity",
    # precision handling
    "const", "cast", "quantize", "dequantize", *COMPRESSION_OPS,
})

ANE_MAX_DIM = 16384  # larger dims are split or sent to the GPU/CPU


@dataclass
class PackageInfo:
    spec_version: int
    opset: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    ops: dict[str, int]
    weights: list[dict[str, Any]]
    compute_dtypes: dict[str, int]  # dtype of the outputs of compute ops → count
    ane_unsupported: dict[str, int] = field(default_factory=dict)
    ane_notes: list[str] = field(default_factory=list)

    def weight_summary(self) -> dict[str, int]:
        """storage kind → number of weight tensors, e.g. {"FLOAT16": 3, "linear/INT8": 2}."""
        out: dict[str, int] = collections.Counter()
        for w in self.weights:
            out[f"{w['compression']}/{w['storage']}" if w["compression"] else w["storage"]] += 1
        return dict(out)


def _dtype_names() -> dict[int, str]:
    from coremltools.proto import MIL_pb2

    return {v: k for k, v in MIL_pb2.DataType.items()}


def _tensor(value_type: Any, names: dict[int, str]) -> tuple[str, list[int]]:
    t = value_type.tensorType
    dims = [d.constant.size if d.WhichOneof("dimension") == "constant" else -1 for d in t.dimensions]
    return names.get(t.dataType, str(t.dataType)), dims


def _feature(f: Any) -> dict[str, Any]:
    from coremltools.proto import FeatureTypes_pb2

    kind = f.type.WhichOneof("Type")
    if kind != "multiArrayType":
        return {"name": f.name, "kind": kind}
    a = f.type.multiArrayType
    return {"name": f.name, "kind": "tensor", "shape": [int(d) for d in a.shape],
            "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(a.dataType),
            "flexible": a.WhichOneof("ShapeFlexibility")}


# A scripted if / loop: coremltools' float16 pass leaves these ops and their blocks in float32 (it skips ops with
# blocks), so their output dtype says nothing about the compute precision asked for; the Neural Engine runs neither
# (they are not in ANE_OPS, and the placement report names them).
CONTROL_FLOW_OPS = ("cond", "while_loop")


def load_spec(path: Path) -> Any:
    import coremltools as ct

    return ct.utils.load_spec(str(path))


def inspect_package(path: Path) -> PackageInfo:
    """Everything the structural check needs, read from the spec (no runtime)."""
    spec = load_spec(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path} is a {spec.WhichOneof('Type')} model, not an ML program")
    names = _dtype_names()
    function = spec.mlProgram.functions["main"]
    ops = list(function.block_specializations[function.opset].operations)
    producer = {out.name: op for op in ops for out in op.outputs}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    roles: dict[str, set[str]] = collections.defaultdict(set)  # tensor → the input names it is consumed as
    for op in ops:
        for key, arg in op.inputs.items():
            for binding in arg.arguments:
                if binding.name:
                    consumers[binding.name].append(op)
                    roles[binding.name].add(key)

    def arg_dtype(op: Any, key: str) -> str | None:
        if key in op.inputs:  # iOS17+: packed data comes from a const op (or inline)
            binding = op.inputs[key].arguments[0]
            value_type = producer[binding.name].outputs[0].type if binding.name else binding.value.type
            return _tensor(value_type, names)[0]
        if key in op.attributes:  # iOS16 constexpr ops carry their data as attributes
            return names.get(op.attributes[key].type.tensorType.dataType)
        return None

    def arg_dims(op: Any, key: str) -> list[int]:
        if key in op.inputs:
            binding = op.inputs[key].arguments[0]
            value_type = producer[binding.name].outputs[0].type if binding.name else binding.value.type
            return _tensor(value_type, names)[1]
        if key in op.attributes:
            return _tensor(op.attributes[key].type, names)[1]
        return []

    weights: list[dict[str, Any]] = []
    compute: dict[str, int] = collections.Counter()
    for op in ops:
        dtype, dims = _tensor(op.outputs[0].type, names) if op.outputs else ("", [])
        users = sorted({c.type for c in consumers[op.outputs[0].name]}) if op.outputs else []
        if op.type in COMPRESSION_OPS:
            storage = next((d for d in (arg_dtype(op, k) for k in ("data", "quantized_data", "indices")) if d), None)
            lut = arg_dims(op, "lut")
            if lut:  # iOS16/17 pack the indices into UINT8 bytes: the palette size says the bits
                entries = lut[-2] if len(lut) >= 2 else lut[-1]
                storage = f"UINT{max(1, int(math.log2(entries)))}" if entries > 1 else storage
            weights.append({"name": op.outputs[0].name, "compression": COMPRESSION_OPS[op.type], "op": op.type,
                            "storage": storage, "dtype": dtype, "shape": dims, "elements": math.prod(dims),
                            "used_by": users})
        elif op.type == "const":
            if dtype.startswith(("FLOAT", "BFLOAT")) and len(dims) >= 1 and math.prod(dims) >= 16 \
                    and not any(u in COMPRESSION_OPS for u in users):
                weights.append({"name": op.outputs[0].name, "compression": None, "op": "const", "storage": dtype,
                                "dtype": dtype, "shape": dims, "elements": math.prod(dims), "used_by": users,
                                "used_as": sorted(roles[op.outputs[0].name])})
        elif op.type not in ("cast", "quantize", "dequantize", *CONTROL_FLOW_OPS):
            compute[dtype] += 1
    info = PackageInfo(int(spec.specificationVersion), function.opset, [_feature(f) for f in spec.description.input],
                       [_feature(f) for f in spec.description.output], dict(collections.Counter(o.type for o in ops)),
                       weights, dict(compute))
    _ane_report(info, ops, names)
    return info


def _ane_report(info: PackageInfo, ops: list[Any], names: dict[int, str]) -> None:
    info.ane_unsupported = {t: n for t, n in info.ops.items() if t not in ANE_OPS}
    if info.compute_dtypes.get("FLOAT32"):
        info.ane_notes.append(f"{info.compute_dtypes['FLOAT32']} op(s) compute in float32: the Neural Engine runs float16 "
                              "only, so they run on the CPU/GPU (convert with compute precision float16)")
    flexible = [f["name"] for f in info.inputs if f.get("flexible")]
    if flexible:
        info.ane_notes.append(f"flexible input shapes ({', '.join(flexible)}): the Neural Engine needs static shapes")
    big = sorted({op.type for op in ops if op.type != "const" and op.outputs
                  and any(d > ANE_MAX_DIM for d in _tensor(op.outputs[0].type, names)[1])})
    if big:
        info.ane_notes.append(f"tensors with a dim > {ANE_MAX_DIM} in {', '.join(big)}: likely moved off the Neural Engine")


def package_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def weight_bytes(path: Path) -> int:
    """Size of the weight blob file(s) of an .mlpackage."""
    return sum(p.stat().st_size for p in Path(path).rglob("weights/*") if p.is_file())


def fp32_weight_bytes(info: PackageInfo) -> int:
    """What the same weights take in float32 (the reference for `size vs fp32`)."""
    return sum(4 * w["elements"] for w in info.weights)


def load_program(path: Path) -> Any:
    """The package's MIL program (pymil), weights read from its blob file: lets constexpr ops be decompressed here."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = load_spec(path)
    return milproto_load(spec, spec.specificationVersion, str(Path(path) / "Data" / "com.apple.CoreML" / "weights"))


def weight_arrays(program: Any, min_elements: int = 16) -> dict[str, Any]:
    """Every weight of a MIL program as a dense float32 array (constexpr_* ops decompressed), keyed by a name without
    the compression suffixes, so that the same weight before and after compression has the same key."""
    import numpy as np

    out: dict[str, Any] = {}
    for op in program.functions["main"].operations:
        value = None
        if op.op_type in COMPRESSION_OPS:
            try:
                infer = getattr(op, "materialized_val_inference", None) or op.value_inference
                value = infer()
            except Exception:  # an op version without value inference: leave it out
                continue
        elif op.op_type == "const":
            value = op.outputs[0].val
            users = {u.op_type for u in op.outputs[0].child_ops}
            if users & set(COMPRESSION_OPS):
                continue
        if value is None or not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.size < min_elements:
            continue
        key = op.outputs[0].name
        for suffix in ("_palettized", "_quantized", "_to_fp16"):
            key = key.replace(suffix, "")
        out[key] = np.asarray(value, dtype=np.float32)
    return out


def weight_snr_db(reference: dict[str, Any], compressed: dict[str, Any]) -> dict[str, float]:
    """SNR (dB) of each compressed weight against the same weight before compression (matched by name, else by a
    unique shape)."""
    import numpy as np

    by_shape: dict[tuple[int, ...], list[str]] = collections.defaultdict(list)
    for name, value in reference.items():
        by_shape[value.shape].append(name)
    out = {}
    for name, value in compressed.items():
        ref_name = name if name in reference else (by_shape[value.shape][0] if len(by_shape[value.shape]) == 1 else None)
        if ref_name is None or reference[ref_name].shape != value.shape:
            continue
        ref = reference[ref_name]
        noise = float(np.sum((ref - value) ** 2))
        signal = float(np.sum(ref ** 2))
        out[name] = round(10 * math.log10(signal / noise), 2) if noise > 0 and signal > 0 else float("inf")
    return out
