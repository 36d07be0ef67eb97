"""Shared by the Core ML converters (torch_to_coreml, keras_to_coreml): coremltools options from the profile, and the
finishing steps (weight compression, I/O names, save, size notes).

Profile keys used (all optional, see docs/targets/coreml.md):
  [compiler] compute_precision = "float32" | "float16"      (Core ML compute precision; the Neural Engine needs float16)
             minimum_deployment_target = "iOS16" | "iOS17" | "iOS18" | "macOS13" ...
             compute_units = "ALL" | "CPU_AND_NE" | "CPU_AND_GPU" | "CPU_ONLY"   (stored in the manifest; used at load)
             io_dtype = "float32" | "float16"                (dtype of the model's inputs/outputs)
  [quantize] precision = fp32 | fp16 | w8 | palettize4 | palettize6 | w8a8, options.weight_threshold = N
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.context import StepContext
from edgeconv.errors import InvalidInputError, UnsupportedError, UsageError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.targets.coreml._loader import coremltools, quiet
from edgeconv.targets.coreml.options import parse

PRECISIONS = {"float32": "FLOAT32", "fp32": "FLOAT32", "float16": "FLOAT16", "fp16": "FLOAT16"}


def options(ctx: StepContext) -> dict[str, Any]:
    """The ct.convert keyword arguments this profile asks for."""
    ct = coremltools()
    compiler = parse(ctx.profile)
    precision_name = compiler.precision_for(ctx.profile.quantize.precision)
    if precision_name.lower() not in PRECISIONS:
        raise UsageError(f"{ctx.profile.name}: compiler.compute_precision = {precision_name!r}", "use float32 or float16")
    target_name = compiler.minimum_deployment_target
    target = getattr(ct.target, target_name, None)
    if target is None:
        known = ", ".join(t.name for t in ct.target)
        raise UsageError(f"{ctx.profile.name}: unknown compiler.minimum_deployment_target {target_name!r}", f"use one of {known}")
    units = compiler.compute_units  # one of COMPUTE_UNITS, checked when the profile loaded
    return {
        "convert_to": "mlprogram",
        "compute_precision": getattr(ct.precision, PRECISIONS[precision_name.lower()]),
        "minimum_deployment_target": target,
        "compute_units": getattr(ct.ComputeUnit, units),
        "skip_model_load": True,  # loading needs the Core ML runtime (macOS); validation loads it when it can
    }


def io_dtype(ctx: StepContext) -> Any:
    import numpy as np

    name = parse(ctx.profile).io_dtype  # float32 | float16, checked when the profile loaded
    return np.float32 if name == "float32" else np.float16


def tensor_types(ctx: StepContext, names: list[str] | None = None) -> list[Any]:
    """ct.TensorType for each source input (static shapes, dtype pinned so fp16 programs keep the I/O dtype asked)."""
    ct = coremltools()
    dtype = io_dtype(ctx)
    out = []
    for i, spec in enumerate(ctx.source.inputs):
        unknown = [j for j in spec.dynamic_dims if j != 0]
        if unknown or not spec.shape:
            raise InvalidInputError(
                f"Core ML needs a fixed input shape; {spec.name} is [{spec.shape_str()}]",
                f"fix it with --input-shape {spec.name}=DIMS (your real sizes; a dynamic batch dim becomes 1)")
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        name = names[i] if names else spec.name
        out.append(ct.TensorType(name=name, shape=shape, dtype=dtype if "float" in spec.dtype else None))
    return out


def output_types(ctx: StepContext, count: int) -> list[Any]:
    """One dtype-only ct.TensorType per output, so fp16 programs keep the asked I/O dtype on outputs too."""
    ct = coremltools()
    return [ct.TensorType(dtype=io_dtype(ctx)) for _ in range(count)]


def convert(model: Any, ctx: StepContext, **kwargs: Any) -> Any:
    """ct.convert with the profile's options; failures become exit 4 naming the op coremltools stopped at."""
    ct = coremltools()
    try:
        with quiet():
            return ct.convert(model, **options(ctx), **kwargs)
    except (UsageError, UnsupportedError):
        raise
    except Exception as e:
        raise UnsupportedError(f"coremltools could not convert the model: {first_line(e)}",
                               "the message names the op coremltools does not support; see docs/targets/coreml.md") from e


def rename_outputs(mlmodel: Any, names: list[str]) -> Any:
    """Give the Core ML outputs the source's output names (coremltools names them after graph nodes: Identity, var_68)."""
    ct = coremltools()
    spec = mlmodel.get_spec()
    current = [o.name for o in spec.description.output]
    if not names or len(names) != len(current) or names == current:
        return mlmodel
    taken = {i.name for i in spec.description.input}
    for old, new in zip(current, names):
        if new and new not in taken and old != new:
            ct.utils.rename_feature(spec, old, new, rename_inputs=False, rename_outputs=True)
            taken.add(new)
    with quiet():
        return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


def finish(mlmodel: Any, ctx: StepContext, output_names: list[str], *, activations_done: bool = False) -> Artifact:
    """Compress weights as the profile asks, name outputs, save work_dir/model.mlpackage, note sizes."""
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.coreml._spec import fp32_weight_bytes, inspect_package, package_bytes, weight_bytes

    scheme = ctx.profile.quantize
    cq.check_precision(scheme.precision, ctx.profile.name)
    compressing = scheme.precision in cq.WEIGHT_PRECISIONS or scheme.precision == "w8a8"
    before = _weights_of(mlmodel) if compressing else None  # (renaming drops the in-memory MIL program)
    mlmodel = rename_outputs(mlmodel, output_names)
    if compressing:
        if scheme.precision == "w8a8" and not activations_done:
            mlmodel = _calibrate_activations(mlmodel, ctx)
        if scheme.precision in cq.PALETTE_BITS:
            from edgeconv.targets.coreml.mixed_bits import palettize

            mlmodel = palettize(mlmodel, ctx)
        else:
            with quiet():
                mlmodel = cq.compress_weights(mlmodel, scheme)
    out = ctx.work_dir / "model.mlpackage"
    try:
        with quiet():
            mlmodel.save(str(out))
    except Exception as e:
        raise UnsupportedError(f"coremltools could not save the .mlpackage: {first_line(e)}", "") from e
    make_reproducible(out)
    info = inspect_package(out)
    reference = fp32_weight_bytes(info)
    ctx.notes["coreml"] = {
        "compute_precision": str(options(ctx)["compute_precision"].value),
        "minimum_deployment_target": parse(ctx.profile).minimum_deployment_target,
        "compute_units": parse(ctx.profile).compute_units,
        "opset": info.opset,
        "package_bytes": package_bytes(out),
        "weight_bytes": weight_bytes(out),
        "fp32_weight_bytes": reference,
        "weights_vs_fp32": round(weight_bytes(out) / reference, 4) if reference else None,
        "weights": info.weight_summary(),
    }
    if before:
        ctx.notes["coreml"]["weight_snr_db"] = _weight_snr(before, out, info)
    return Artifact(out, Format.COREML)


def make_reproducible(package: Path) -> None:
    """Same model, same bytes. coremltools names the package's items with random UUIDs (Manifest.json) and serializes
    the spec's maps in hash order; the items get UUIDs derived from their paths, the spec is serialized with sorted
    maps. Core ML reads both unchanged (the identifiers are only keys)."""
    import json
    import uuid

    from coremltools.proto import Model_pb2

    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeconv:{item['path']}"))
           for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {ids[old]: item for old, item in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = ids[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n", encoding="utf-8")
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    spec_path = package / "Data" / root["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _weights_of(mlmodel: Any) -> dict[str, Any] | None:
    from edgeconv.targets.coreml._spec import weight_arrays

    program = getattr(mlmodel, "_mil_program", None)
    return weight_arrays(program) if program is not None else None


def _weight_snr(before: dict[str, Any], out: Path, info: Any) -> dict[str, Any]:
    """How much compression changed the weights: SNR (dB) of every compressed weight against itself before compression
    (a numerical check that needs no Core ML runtime)."""
    from edgeconv.targets.coreml._spec import load_program, weight_arrays, weight_snr_db

    with quiet():
        after = weight_arrays(load_program(out))
    compressed = {w["name"].replace("_palettized", "").replace("_quantized", "").replace("_to_fp16", "")
                  for w in info.weights if w["compression"]}
    snr = {k: v for k, v in weight_snr_db(before, after).items() if k in compressed}
    finite = [v for v in snr.values() if v != float("inf")]
    return {"min": min(finite) if finite else None, "mean": round(sum(finite) / len(finite), 2) if finite else None,
            "compressed": len(snr)}


def _calibrate_activations(mlmodel: Any, ctx: StepContext) -> Any:
    """int8 activations on the converted float program: ranges measured with Core ML where it exists (macOS), else
    with the NumPy MIL reference executor; coremltools' passes insert the quantize/dequantize pairs either way."""
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.quantizers.calibration import samples_for
    from edgeconv.targets.coreml.runtime import CoremlRuntime

    names = [i.name for i in mlmodel.get_spec().description.input]  # Core ML's input names, in source order
    samples = [{n: feeds[s.name] for n, s in zip(names, ctx.source.inputs)} for feeds in samples_for(ctx)]
    why_not = CoremlRuntime.can_execute_here()
    with quiet():
        ranges = None  # the reference executor's activation ranges, when the log-domain check measured them
        try:
            kept, ranges = cq.log_domain_ops(mlmodel, samples)
        except NotImplementedError as e:  # an op the reference executor lacks: Core ML calibrates (macOS) or refuses
            kept, ctx.notes["log_domain"] = [], f"not measured: the reference executor has no '{e}' op"
        if kept:
            ctx.notes["log_domain_float"] = [k.to_json() for k in kept]
        names_kept = [k.node for k in kept]
        if why_not is None:
            ctx.notes["activation_calibration"] = "Core ML (coremltools linear_quantize_activations)"
            return cq.quantize_activations(mlmodel, samples, ctx.profile.quantize, names_kept)
        ctx.notes["activation_calibration"] = ("edgeconv NumPy MIL reference executor (no Core ML runtime here) → "
                                               "coremltools activation quantization passes")
        return cq.quantize_activations_with_reference(mlmodel, samples, ctx.profile.quantize, names_kept, ranges)
