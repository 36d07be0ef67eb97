"""Graph normalisation: what real exported graphs need before quantizing or compiling them.

fix input shapes → upgrade old opsets → fold constants and shape-computing subgraphs, fuse BatchNorm (onnxslim) →
move Constant-node weights to initializers → the fusions the profile asks for (`[normalise] fuse`, fusions.py) → infer
shapes → check. Returns a report of what changed.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.targets.schema import OpsetRange

log = logging.getLogger(__name__)
TWO_GB = 2**31 - 1
SHAPE_OPS = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Range", "Expand", "ConstantOfShape", "Slice"})


@dataclass(frozen=True)
class NormaliseReport:
    opset_before: int
    opset_after: int
    nodes_before: int
    nodes_after: int
    constant_nodes_before: int
    constant_nodes_after: int
    batchnorm_before: int
    batchnorm_after: int
    shape_nodes_before: int
    shape_nodes_after: int
    shapes_fixed: dict[str, list[int]] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)  # fusion name (fusions.py) → subgraphs replaced
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # what the user should know (shown as warnings, also in the manifest)


def default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def check_versions(model: Any, path: Path) -> None:
    import onnx

    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedError(
            f"{path} has ONNX IR version {model.ir_version}; this onnx {onnx.__version__} reads up to {onnx.IR_VERSION}",
            "export with an older IR version, or upgrade onnx",
        )
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise UnsupportedError(f"{path} uses opset {opset}; the newest this onnx knows is {newest}", "export with an older opset")


def check_model(model: Any, path: Path) -> None:
    """The ONNX checker; on failure, every node that fails on its own is listed (the checker stops at the first).
    `model` may be a path (models over 2 GB are checked from disk: protobuf cannot serialise them)."""
    import onnx

    try:
        onnx.checker.check_model(str(model) if isinstance(model, Path) else model, full_check=False)
    except onnx.checker.ValidationError as e:
        text = str(e)
        bad = [] if isinstance(model, Path) else _failing_nodes(model)
        nodes = [f"{name} ({op}): {why}" for name, op, why in bad] or sorted(
            {line.split("==> Context: ")[1].strip() for line in text.splitlines() if "==> Context:" in line})
        names = [name for name, _, _ in bad]
        where = f"; failing nodes: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}" if names else (
            f" (at {', '.join(nodes)})" if nodes else "")
        raise InvalidInputError(f"{path} fails the ONNX checker: {first_line(e, 200)}{where}",
                                "the exporter wrote an invalid graph; re-export it", details={"nodes": nodes}) from e


def _failing_nodes(model: Any) -> list[tuple[str, str, str]]:
    """(name, op, first line of the error) for every top-level node the checker refuses on its own."""
    import onnx
    from onnx import checker

    ctx = checker.C.CheckerContext()
    ctx.ir_version = model.ir_version
    ctx.opset_imports = {imp.domain: imp.version for imp in model.opset_import}
    out = []
    for i, node in enumerate(model.graph.node):
        try:
            checker.check_node(node, ctx)
        except onnx.checker.ValidationError as e:
            out.append((node.name or f"#{i}", node.op_type, first_line(e, 160)))
        except Exception:  # noqa: BLE001 - a node the per-node checker cannot judge is not listed
            continue
    return out


def check_ops(model: Any, path: Path) -> None:
    """Every op must exist in ONNX (at the model's opset) or be one of the model's own functions; ONNX Runtime's
    com.microsoft ops are allowed. Unknown ops: exit 4 listing all of them, before any work."""
    import onnx

    opsets = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    local = {(f.domain, f.name) for f in model.functions}
    unknown: dict[str, list[str]] = {}
    for i, node in enumerate(model.graph.node):
        domain = node.domain or "ai.onnx"
        if (node.domain, node.op_type) in local or domain == "com.microsoft":
            continue
        try:
            onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), "" if domain == "ai.onnx" else domain)
        except onnx.defs.SchemaError:
            op = node.op_type if domain == "ai.onnx" else f"{domain}.{node.op_type}"
            unknown.setdefault(op, []).append(node.name or f"#{i}")
    if unknown:
        listed = ", ".join(f"{op} ({len(names)} node{'s' if len(names) > 1 else ''}: {', '.join(names[:3])}"
                           f"{' …' if len(names) > 3 else ''})" for op, names in sorted(unknown.items()))
        raise UnsupportedError(
            f"{path} uses {len(unknown)} op(s) that are not ONNX ops at its opset: {listed}",
            "replace them with standard ONNX ops when exporting (custom ops cannot be quantized, compiled or validated)",
            details={"unsupported_ops": {op: names for op, names in sorted(unknown.items())}},
        )


def _counts(model: Any) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def constants_to_initializers(model: Any) -> int:
    """Move tensor-valued Constant nodes into graph initializers (quantizers leave Constant weights float)."""
    from onnx import numpy_helper

    kept, moved = [], 0
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            array = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
            moved += 1
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return moved


def set_input_shapes(model: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[int]]:
    fixed = {}
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            want = shapes[value.name]
            if len(dims) != len(want):
                raise InvalidInputError(f"input {value.name} has {len(dims)} dims, --input-shape gives {len(want)}", "")
            for dim, size in zip(dims, want):
                dim.ClearField("dim_param")
                dim.dim_value = size
            fixed[value.name] = list(want)
    return fixed


def convert_opset(model: Any, path: Path, opset: OpsetRange, notes: list[str]) -> Any:
    """Bring the model into the target's opset range: kept when inside it (what the exporter wrote), upgraded to the
    preferred opset below it, down-converted to the newest the target takes above it (exit 4 when that fails)."""
    import onnx
    from onnx import version_converter

    have = default_opset(model)
    want = opset.target_for(have)
    if want == have:
        return model
    try:
        converted = version_converter.convert_version(model, want)
        if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in converted.graph.initializer):
            onnx.checker.check_model(converted)  # the converter can write attributes the new opset lacks
    except Exception as e:
        if want > have:
            raise UnsupportedError(f"cannot upgrade the model ({path.name}) from opset {have} to {want}: {first_line(e)}",
                                   f"the target takes opset {opset}; export the model at opset {opset.min} or newer") from e
        raise UnsupportedError(
            f"the model ({path.name}) uses opset {have}, the target takes opset {opset}, and down-converting to {want} failed: "
            f"{first_line(e)}",
            f"re-export at opset {opset.max} or lower (torch.onnx.export(..., opset_version={opset.max}), "
            f"tf2onnx --opset {opset.max}); if your runtime is newer, widen the range: --set opset.max={have}") from e
    notes.append(f"opset {have} → {want} (the target takes {opset})")
    return converted


def normalise(src: Artifact, out: Path, opset: OpsetRange | int, shapes: dict[str, tuple[int, ...]],
              fuse: tuple[str, ...] = (), decompose: tuple[str, ...] = ()) -> tuple[Artifact, NormaliseReport]:
    """`opset`: the target's range (an int: exactly that opset)."""
    if isinstance(opset, int):
        opset = OpsetRange.exactly(opset)
    import onnx
    import onnxslim

    from edgeconv.sources.onnx_source import external_data_files, load_onnx_checked

    model = load_onnx_checked(src.path, with_data=False)
    check_versions(model, src.path)
    check_ops(model, src.path)
    external = external_data_files(model, src.path)
    if external and sum(external.values()) + _serialized_size(model) > TWO_GB - 10_000_000:
        return _normalise_large(model, src, out, opset, shapes, external, fuse)
    if external:
        model = load_onnx_checked(src.path)
    check_model(model, src.path)
    before = _counts(model)
    opset_before = default_opset(model)
    notes: list[str] = []
    model = convert_opset(model, src.path, opset, notes)
    fixed = set_input_shapes(model, shapes)
    _run_passes(model, notes, before_slim=True)
    slim_shapes = [f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items()]
    buffer = io.StringIO()
    warnings: list[str] = []
    unslimmed = onnx.ModelProto()
    unslimmed.CopyFrom(model)  # onnxslim may have rewritten part of its input when it fails
    try:
        with contextlib.redirect_stdout(buffer):
            model = onnxslim.slim(model, input_shapes=slim_shapes or None)
    except Exception as e:  # an optional optimiser: the unoptimised graph is still a valid graph
        log.debug("onnxslim output:\n%s", buffer.getvalue())
        model = unslimmed
        warnings.append(f"graph optimisation (onnxslim) failed, continuing with the unoptimised graph (constants not "
                        f"folded, BatchNorm not fused): {first_line(e)}")
        notes.append(warnings[-1])
    moved = constants_to_initializers(model)
    if moved:
        notes.append(f"{moved} Constant nodes moved to initializers")
    _run_passes(model, notes)
    _decompose(model, decompose, notes)
    fused = _fuse(model, fuse, notes)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:  # shape inference is advisory
        notes.append(f"shape inference incomplete: {first_line(e)}")
    check_model(model, out)
    after = _counts(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    companions: tuple[Path, ...] = ()
    if _serialized_size(model) > TWO_GB - 10_000_000:  # protobuf cannot hold it: weights go to a data file
        data = out.with_name(out.name + ".data")
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
        companions = (data,)
    else:
        onnx.save_model(model, str(out))
    report = _report(opset_before, default_opset(model), before, after, fixed, notes, fused, warnings)
    return Artifact(out, Format.ONNX, companions=companions), report


def _normalise_large(model: Any, src: Artifact, out: Path, opset: OpsetRange, shapes: dict[str, tuple[int, ...]],
                     external: dict[Path, int], fuse: tuple[str, ...]) -> tuple[Artifact, NormaliseReport]:
    """A model over 2 GB (weights in external data): the graph is normalised without loading the weights (protobuf
    cannot hold them, and onnxslim would need several copies in memory), so constant folding is skipped. The data
    files are copied beside the output model under their own names."""
    import shutil

    import onnx

    check_model(src.path, src.path)
    before = _counts(model)
    opset_before = default_opset(model)
    notes = ["larger than 2 GB: weights kept in external data, graph optimisation (onnxslim) skipped"]
    model = convert_opset(model, src.path, opset, notes)
    fixed = set_input_shapes(model, shapes)
    moved = constants_to_initializers(model)
    if moved:
        notes.append(f"{moved} Constant nodes moved to initializers")
    fused = _fuse(model, fuse, notes)  # the patterns' constants (0.5, 1, sqrt 2) are small: stored in the graph
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:  # advisory
        notes.append(f"shape inference incomplete: {first_line(e)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    companions = []
    for data in external:
        dest = out.parent / data.relative_to(src.path.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, dest)  # not a link: the ONNX checker and Runtime refuse linked data files
        companions.append(dest)
    onnx.save_model(model, str(out))
    check_model(out, out)
    after = _counts(model)
    report = _report(opset_before, default_opset(model), before, after, fixed, notes, fused)
    return Artifact(out, Format.ONNX, companions=tuple(companions)), report


def _run_passes(model: Any, notes: list[str], before_slim: bool = False) -> None:
    """The graph passes every normalised graph gets (edgeconv/passes/): those that let onnxslim fold more before it,
    the others after it, once constants are initializers."""
    from edgeconv.passes.castlike import castlike_to_cast
    from edgeconv.passes.constant_values import constant_values_to_tensors
    from edgeconv.passes.conv_affine import fold_conv_affine
    from edgeconv.passes.gathernd import gathernd_to_gather
    from edgeconv.passes.gemm_bias import expand_scalar_gemm_bias
    from edgeconv.passes.hardswish import fuse_hardswish
    from edgeconv.passes.loop_trip_count import cast_loop_trip_counts
    from edgeconv.passes.mask_fill import bound_mask_fill
    from edgeconv.passes.subgraph_names import unique_subgraph_initializers

    # after onnxslim: its constant folding leaves the patterns' constants as initializers; hard-swish first, so that
    # the `+ 3` of an SE gate is not folded into the Conv before it is recognised
    passes = (("list-form Constants → tensors", constant_values_to_tensors),
              ("CastLike → Cast", castlike_to_cast),
              ("Loop trip count cast to int64", cast_loop_trip_counts)) if before_slim else (
        ("If / Loop body initializers renamed apart", unique_subgraph_initializers),
        ("scalar Gemm bias expanded", expand_scalar_gemm_bias),
        ("constant GatherND → Gather", gathernd_to_gather),
        ("hard-swish / hard-sigmoid fused", fuse_hardswish),
        ("Conv affine ops folded", fold_conv_affine),
        ("attention-mask fill -3.4e38 → -100", bound_mask_fill))
    for name, apply in passes:
        count = apply(model)
        if count:
            notes.append(f"{name}: {count}")


def _decompose(model: Any, names: tuple[str, ...], notes: list[str]) -> None:
    """The rewrites a profile asks for (`[normalise] decompose`): patterns its converter gets wrong, written otherwise."""
    from edgeconv.passes.batchnorm_affine import batchnorm_to_affine
    from edgeconv.passes.maxpool_ceil import maxpool_without_ceil
    from edgeconv.passes.neg_mul import neg_to_mul
    from edgeconv.passes.reciprocal_div import reciprocal_to_div
    from edgeconv.passes.stft_conv import stft_to_conv

    passes = {"maxpool_ceil": maxpool_without_ceil, "reciprocal": reciprocal_to_div, "batchnorm": batchnorm_to_affine,
              "neg": neg_to_mul, "stft": stft_to_conv}
    for name in names:
        count = passes[name](model)
        if count:
            notes.append(f"{name} decomposed: {count}")


def _fuse(model: Any, fuse: tuple[str, ...], notes: list[str]) -> dict[str, int]:
    if not fuse:
        return {}
    from edgeconv.fusions import apply_fusions

    report = apply_fusions(model, fuse)
    notes.extend(report.notes)
    return report.fused


def _report(opset_before: int, opset_after: int, before: Counter, after: Counter, fixed: dict[str, list[int]],
            notes: list[str], fused: dict[str, int], warnings: list[str] | None = None) -> NormaliseReport:
    return NormaliseReport(
        opset_before=opset_before, opset_after=opset_after,
        nodes_before=sum(before.values()), nodes_after=sum(after.values()),
        constant_nodes_before=before["Constant"], constant_nodes_after=after["Constant"],
        batchnorm_before=before["BatchNormalization"], batchnorm_after=after["BatchNormalization"],
        shape_nodes_before=sum(before[o] for o in SHAPE_OPS), shape_nodes_after=sum(after[o] for o in SHAPE_OPS),
        shapes_fixed=fixed, fused=fused, notes=tuple(notes), warnings=tuple(warnings or ()),
    )


def _serialized_size(model: Any) -> int:
    try:
        return int(model.ByteSize())
    except Exception:  # too large for protobuf to size
        return TWO_GB
