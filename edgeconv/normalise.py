"""Graph normalisation: what real exported graphs need before quantizing or compiling them.

fix input shapes → upgrade old opsets → fold constants and shape-computing subgraphs, fuse BatchNorm (onnxslim) →
move Constant-node weights to initializers → infer shapes → check. Returns a report of what changed.
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
    notes: tuple[str, ...] = ()


def default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def check_versions(model: Any, path: Path, target_opset: int) -> None:
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
    import onnx

    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        text = str(e)
        nodes = sorted({line.split("==> Context: ")[1].strip() for line in text.splitlines() if "==> Context:" in line})
        where = f" (at {', '.join(nodes)})" if nodes else ""
        raise InvalidInputError(f"{path} fails the ONNX checker: {first_line(e)}{where}",
                                "the exporter wrote an invalid graph; re-export it", details={"nodes": nodes}) from e


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


def normalise(src: Artifact, out: Path, target_opset: int, shapes: dict[str, tuple[int, ...]]) -> tuple[Artifact, NormaliseReport]:
    import onnx
    import onnxslim
    from onnx import version_converter

    from edgeconv.sources.onnx_source import load_onnx_checked

    model = load_onnx_checked(src.path)
    check_versions(model, src.path, target_opset)
    check_model(model, src.path)
    before = _counts(model)
    opset_before = default_opset(model)
    notes: list[str] = []
    if opset_before < target_opset:
        try:
            model = version_converter.convert_version(model, target_opset)
            notes.append(f"opset {opset_before} → {target_opset}")
        except Exception as e:
            raise UnsupportedError(f"cannot upgrade opset {opset_before} to {target_opset}: {first_line(e)}",
                                   "export the model with a newer opset") from e
    elif opset_before > target_opset:
        raise UnsupportedError(
            f"{src.path} uses opset {opset_before}; the target takes at most opset {target_opset}",
            f"export with opset {target_opset} or lower, or use a profile with a newer opset (--set opset={opset_before})",
        )
    fixed = set_input_shapes(model, shapes)
    slim_shapes = [f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items()]
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            model = onnxslim.slim(model, input_shapes=slim_shapes or None)
    except Exception as e:
        log.debug("onnxslim output:\n%s", buffer.getvalue())
        raise UnsupportedError(f"graph optimisation (onnxslim) failed: {first_line(e)}", "the graph may use an op onnxslim cannot fold") from e
    moved = constants_to_initializers(model)
    if moved:
        notes.append(f"{moved} Constant nodes moved to initializers")
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
    report = NormaliseReport(
        opset_before=opset_before, opset_after=default_opset(model),
        nodes_before=sum(before.values()), nodes_after=sum(after.values()),
        constant_nodes_before=before["Constant"], constant_nodes_after=after["Constant"],
        batchnorm_before=before["BatchNormalization"], batchnorm_after=after["BatchNormalization"],
        shape_nodes_before=sum(before[o] for o in SHAPE_OPS), shape_nodes_after=sum(after[o] for o in SHAPE_OPS),
        shapes_fixed=fixed, notes=tuple(notes),
    )
    return Artifact(out, Format.ONNX, companions=companions), report


def _serialized_size(model: Any) -> int:
    try:
        return int(model.ByteSize())
    except Exception:  # too large for protobuf to size
        return TWO_GB
