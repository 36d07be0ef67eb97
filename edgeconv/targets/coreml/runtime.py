"""Core ML: numerical validation with the Core ML runtime on macOS; a structural check everywhere else.

The structural check (Linux, Windows) reads the .mlpackage spec without the runtime and verifies that it is an ML
program, that its inputs/outputs match the source (count, shapes), that the weights are stored the way the profile asks
(float32 / float16 / int8 linear / 4- or 6-bit palettes / quantize-dequantize activations), and reports the ops not
known to run on the Neural Engine (a heuristic list: see coreml/_spec.py). For a Neural Engine profile
(`compiler.compute_units = "CPU_AND_NE"`) such ops stop the run with exit 4 unless --allow-cpu-fallback.
It then runs the MIL program with edgeconv's NumPy reference executor (_mil_reference.py) on the validation samples and
applies the profile's gate to it against the source (`checks.mil_reference`): not Core ML, but the converted graph,
weights and quantization ranges, measured.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.deps import is_installed
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes.base import Runtime, Session, StructuralCheck
from edgeconv.targets.coreml.options import parse

# precision → (compression kind, storage dtypes) that every compressible weight must have.
EXPECTED_STORAGE = {
    "w8": ("linear", {"INT8", "UINT8"}),
    "w8a8": ("linear", {"INT8", "UINT8"}),
    "palettize4": ("palettized", {"UINT4"}),
    "palettize6": ("palettized", {"UINT6"}),
}
COMPRESSIBLE_USERS = {"conv", "conv_transpose", "linear", "matmul", "einsum"}


class CoremlSession(Session):
    def __init__(self, model: Any, ctx: StepContext):
        self.model = model
        self.inputs = ctx.source.inputs
        spec = model.get_spec()
        self.input_names = [i.name for i in spec.description.input]
        names = [o.name for o in spec.description.output]
        wanted = list(ctx.source.output_names)
        # outputs in the source's order when the converter named them after the source (Keras / SavedModel)
        self.output_names = tuple(wanted if wanted and set(wanted) <= set(names) else names)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = [feeds[s.name] for s in self.inputs]
        try:
            out = self.model.predict({n: np.ascontiguousarray(v) for n, v in zip(self.input_names, values)})
        except Exception as e:
            raise InvalidInputError(f"Core ML failed on the samples: {first_line(e)}", "check the samples' shapes") from e
        return [np.asarray(out[n]) for n in self.output_names]


class CoremlRuntime(Runtime):
    name = "coreml"
    formats = frozenset({Format.COREML})
    extra = "coreml"
    requires = ("coremltools",)

    @classmethod
    def can_execute_here(cls) -> str | None:
        if sys.platform != "darwin":
            return f"the Core ML runtime exists only on macOS (this is {sys.platform})"
        if not is_installed("coremltools.libcoremlpython"):
            return "coremltools was installed without its Core ML runtime bindings (libcoremlpython)"
        return None

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        from edgeconv.targets.coreml._loader import coremltools

        ct = coremltools()
        units = getattr(ct.ComputeUnit, parse(ctx.profile).compute_units)
        try:
            model = ct.models.MLModel(str(artifact.path), compute_units=units)
        except Exception as e:
            raise UnsupportedError(f"Core ML cannot load {artifact.path.name}: {first_line(e)}",
                                   "raise compiler.minimum_deployment_target only as far as this OS supports") from e
        ctx.notes["coreml_compute_plan"] = _compute_plan(ct, artifact, units)
        return CoremlSession(model, ctx)

    def check_structure(self, artifact: Artifact, ctx: StepContext) -> StructuralCheck:
        from edgeconv.targets.coreml._loader import coremltools
        from edgeconv.targets.coreml._spec import inspect_package

        coremltools()

        try:
            info = inspect_package(artifact.path)
        except Exception as e:
            return StructuralCheck(False, {"loads": False}, (f"the package does not load as a Core ML spec: {first_line(e)}",))
        problems: list[str] = []
        checks: dict[str, object] = {"loads": True, "spec_version": info.spec_version, "opset": info.opset,
                                     "inputs": info.inputs, "outputs": info.outputs, "ops": info.ops,
                                     "weights": info.weight_summary()}
        problems += _check_io(info, ctx)
        problems += _check_weights(info, ctx)
        checks["ane_unsupported_ops"] = info.ane_unsupported
        checks["ane_notes"] = info.ane_notes
        checks["ane_op_list"] = "heuristic allow-list (Apple publishes none): edgeconv/targets/coreml/_spec.py"
        checks["ane_placement"] = placement = neural_engine_placement(info)
        if _wants_neural_engine(ctx) and (info.ane_unsupported or info.ane_notes):
            _judge_placement(info, placement, ctx)
        reference, failures = _reference_check(artifact, ctx)
        checks["mil_reference"] = reference
        problems += failures
        return StructuralCheck(not problems, checks, tuple(problems))


def _reference_check(artifact: Artifact, ctx: StepContext) -> tuple[dict[str, object], list[str]]:
    """Run the package's MIL program with the NumPy reference executor (_mil_reference.py) on the validation samples
    and compare with the source under the profile's gate. Not Core ML (kernels and precision on the device differ), but
    it proves the converted graph, its compressed weights and its quantization ranges compute what the source does."""
    from edgeconv.targets.coreml._spec import load_program
    from edgeconv.targets.coreml._mil_reference import run_in_source_order
    from edgeconv.validation import check_gate, compare
    from edgeconv.validation_stage import source_outputs, validation_samples

    try:
        program = load_program(artifact.path)
        samples = validation_samples(ctx)
        references = source_outputs(samples, ctx, {})
        names, actuals = run_in_source_order(program, ctx.source.inputs, ctx.source.output_names, samples)
    except NotImplementedError as e:
        return {"ran": False, "reason": f"the reference executor has no '{e}' op"}, []
    if samples.kind == "generated":
        ctx.warn("the MIL reference check ran on generated random inputs (no --eval/--calib data given)")
    metrics = compare(names, references, actuals)
    result = check_gate(metrics, ctx.profile.validate.gate)
    record: dict[str, object] = {"ran": True, "executor": "edgeconv NumPy MIL reference (not Core ML)",
                                 "metrics": metrics.to_json(), "samples": samples.describe(), "passed": result.passed}
    failures = [f"MIL reference execution vs source: {f}" for f in result.failures]
    return record, failures


def neural_engine_placement(info: Any) -> dict[str, Any]:
    """How much of the program is expected on the Neural Engine (by the heuristic op list): compute ops are the ops that
    are not constants, casts or weight decompression."""
    from edgeconv.targets.coreml._spec import COMPRESSION_OPS

    free = {"const", "cast", *COMPRESSION_OPS}
    total = sum(n for op, n in info.ops.items() if op not in free)
    elsewhere = {op: n for op, n in info.ane_unsupported.items() if op not in free}
    on_ane = total - sum(elsewhere.values())
    return {"compute_ops": total, "on_neural_engine": on_ane, "share": round(on_ane / total, 4) if total else 1.0,
            "elsewhere": elsewhere}


def _judge_placement(info: Any, placement: dict[str, Any], ctx: StepContext) -> None:
    """Core ML runs the ops the Neural Engine lacks on the GPU / CPU, so a few of them are a placement fact, not a
    failure: a program with at least `[compiler] min_neural_engine_share` (default 0.8) of its compute ops on the
    Neural Engine, and nothing that moves the whole program off it (float32 compute, flexible shapes), is kept with a
    warning. Less than that is exit 4 unless --allow-cpu-fallback."""
    share = parse(ctx.profile).min_neural_engine_share
    listed = ", ".join(f"{op} ×{n}" for op, n in sorted(placement["elsewhere"].items()))
    where = (f"{placement['on_neural_engine']} of {placement['compute_ops']} compute ops "
             f"({100 * placement['share']:.0f}%) on the Neural Engine" + (f"; on GPU/CPU: {listed}" if listed else ""))
    message = "; ".join([where, *info.ane_notes])
    if (placement["share"] >= share and not info.ane_notes) or ctx.options.allow_cpu_fallback:
        accepted = "accepted: --allow-cpu-fallback" if placement["share"] < share or info.ane_notes else \
            f"at least {100 * share:.0f}% on the Neural Engine"
        ctx.warn(f"{ctx.profile.name}: {message} ({accepted})")
        return
    raise UnsupportedError(f"{ctx.profile.name}: {message}",
                           f"pass --allow-cpu-fallback to accept it, set compiler.min_neural_engine_share, or rewrite "
                           f"those ops (the profile asks for {100 * share:.0f}% on the Neural Engine)",
                           details={"ane_placement": placement, "ane_notes": info.ane_notes})


def _wants_neural_engine(ctx: StepContext) -> bool:
    return parse(ctx.profile).compute_units == "CPU_AND_NE"


def _check_io(info: Any, ctx: StepContext) -> list[str]:
    problems = []
    source_inputs = ctx.source.inputs
    if len(info.inputs) != len(source_inputs):
        problems.append(f"{len(info.inputs)} input(s) in the package, {len(source_inputs)} in the source")
    for have, want in zip(info.inputs, source_inputs):
        static = tuple(d if isinstance(d, int) and d > 0 else 1 for d in want.shape)
        if have.get("kind") != "tensor" or (static and tuple(have["shape"]) != static):
            problems.append(f"input {have['name']}: shape {have.get('shape')} ≠ source {want.name} {list(static)}")
    if ctx.source.output_names and len(info.outputs) != len(ctx.source.output_names):
        problems.append(f"{len(info.outputs)} output(s) in the package, {len(ctx.source.output_names)} in the source")
    if not info.outputs:
        problems.append("the package has no outputs")
    return problems


def _check_weights(info: Any, ctx: StepContext) -> list[str]:
    from edgeconv.targets.coreml.compression import weight_threshold

    scheme = ctx.profile.quantize
    problems = []
    compute = info.compute_dtypes
    compute_precision = parse(ctx.profile).precision_for(scheme.precision)
    want_float = "FLOAT32" if compute_precision in ("float32", "fp32") else "FLOAT16"
    wrong_compute = {d: n for d, n in compute.items() if d.startswith("FLOAT") and d != want_float}
    if wrong_compute:
        problems.append(f"compute precision: expected {want_float}, found {wrong_compute}")
    floats = [w for w in info.weights if w["compression"] is None]
    # coremltools keeps a prelu's per-channel slopes in float32 in a float16 program (its fp16 pass skips them): a few
    # values per channel, not weights; everything else must be stored in the compute precision
    wrong_float = sorted({w["storage"] for w in floats if set(w["used_by"]) - {"prelu"}} - {want_float})
    if wrong_float:
        problems.append(f"float weights stored as {wrong_float}, expected {want_float}")
    if scheme.precision in ("fp32", "fp16"):
        compressed = [w["name"] for w in info.weights if w["compression"]]
        if compressed:
            problems.append(f"{len(compressed)} compressed weight(s) in a {scheme.precision} model")
        return problems
    kind, storages = EXPECTED_STORAGE[scheme.precision]
    threshold = weight_threshold(scheme)
    raised = _raised_weights(ctx)  # the mixed-bit search's (mixed_bits.py): a wider palette, or float16
    # coremltools compresses the weights of conv / linear / matmul, never a bias (small, and added in float anyway)
    eligible = [w for w in floats if set(w["used_by"]) & COMPRESSIBLE_USERS and set(w.get("used_as", ["weight"])) - {"bias"}]
    missed = [w["name"] for w in eligible if w["elements"] > threshold and raised.get(w["name"]) != "float16"]
    if missed:
        problems.append(f"{len(missed)} weight(s) of > {threshold} elements left uncompressed: {', '.join(missed[:5])}")
    compressed = [w for w in info.weights if w["compression"]]
    if not compressed and not missed:  # every weight is below the threshold: nothing to compress is not a failure
        ctx.warn(f"{ctx.profile.name}: no weight has more than {threshold} elements, so none was compressed "
                 f"({scheme.precision}); lower [quantize.options] weight_threshold to compress smaller layers")
    elif not compressed:
        problems.append(f"no {kind} weights found (precision {scheme.precision})")
    bad = [f"{w['name']} ({w['compression']}/{w['storage']})" for w in compressed
           if w["compression"] != kind or (w["storage"] not in storages and not _raised_palette(w, raised))]
    if bad:
        problems.append(f"weights not stored as {kind} {sorted(storages)}: {', '.join(bad[:5])}")
    if raised:
        problems += _check_mixed_bits(info, ctx)
    if scheme.precision == "w8a8" and not (info.ops.get("quantize") and info.ops.get("dequantize")):
        problems.append("w8a8: no quantize/dequantize ops on activations")
    return problems


def _raised_weights(ctx: StepContext) -> dict[str, str]:
    """{const name: "palette6" | "palette8" | "float16"}: the weights the mixed-bit palette search raised
    (notes.coreml_mixed_bits)."""
    note = ctx.notes.get("coreml_mixed_bits") or {}
    return {w["name"]: w["storage"] for w in note.get("raised") or []}


def _raised_palette(weight: dict[str, Any], raised: dict[str, str]) -> bool:
    storage = raised.get(str(weight["name"]).removesuffix("_palettized"), "")
    return storage.startswith("palette") and weight["storage"] == f"UINT{storage.removeprefix('palette')}"


def _check_mixed_bits(info: Any, ctx: StepContext) -> list[str]:
    """A mixed-bit package stays within the bits per weight its search was allowed (tables included)."""
    from edgeconv.targets.coreml.mixed_bits import package_average_bits

    note = ctx.notes["coreml_mixed_bits"]
    average = package_average_bits(info.weights, _raised_weights(ctx))
    if average > float(note["max_average_bits"]) + 1e-6:
        return [f"mixed-bit palettes: {average:.2f} bits per weight > the budget {note['max_average_bits']:g}"]
    return []


def _compute_plan(ct: Any, artifact: Artifact, units: Any) -> dict[str, int] | str:
    """Which device Core ML prefers for each op (macOS 14.4+): {device: op count}."""
    try:
        from coremltools.models.compute_plan import MLComputePlan

        model = ct.models.MLModel(str(artifact.path), compute_units=units)
        plan = MLComputePlan.load_from_path(model.get_compiled_model_path(), compute_units=units)
        counts: dict[str, int] = {}
        for op in plan.model_structure.program.functions["main"].block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is not None:
                device = type(usage.preferred_compute_device).__name__.replace("ML", "").replace("ComputeDevice", "")
                counts[device] = counts.get(device, 0) + 1
        return counts
    except Exception as e:  # older macOS / coremltools: the plan is informative only
        return f"compute plan not available: {first_line(e)}"
