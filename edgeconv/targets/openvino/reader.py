"""Reads OpenVINO IR (.xml + .bin): I/O with dynamic dims, op histogram and weights (OpenVINO parses the topology,
nothing runs), and the precision from FakeQuantize layers and weight constants (the .xml alone)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.errors import InvalidInputError
from edgeconv.formats import Artifact, Format, TensorSpec, read_head
from edgeconv.precision import Inferred, plural

if TYPE_CHECKING:
    from edgeconv.inspect import ModelReport


class OpenVinoReader(ArtifactReader):
    name = "openvino"
    format = Format.OPENVINO

    def sniff(self, path: Path, head: bytes) -> Artifact | None:
        """An IR topology: XML whose root is <net>; its weights are the .bin of the same stem beside it (a companion)."""
        if not (head.lstrip().startswith((b"<?xml", b"<net")) and b"<net" in read_head(path, 512)):
            return None
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise InvalidInputError(f"{path} is an OpenVINO IR topology but its weights {weights.name} are not beside it",
                                    "keep the .xml and its .bin together (same name, same folder)")
        return Artifact(path, Format.OPENVINO, companions=(weights,))

    def inspect(self, artifact: Artifact, report: "ModelReport") -> None:
        inspect_openvino(artifact, report)

    def io(self, artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        from edgeconv.targets.openvino.runtime import ir_io

        return ir_io(artifact)

    def precision(self, artifact: Artifact) -> Inferred:
        return _openvino(artifact.path)


def _ov_dims(port: Any) -> tuple[int | str | None, ...]:
    """Static dims as ints; a dynamic one as None (unbounded) or as OpenVINO writes its bounds (`1..8`)."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return ()
    return tuple(d.get_length() if d.is_static else (None if str(d) == "?" else str(d)) for d in shape)


def inspect_openvino(artifact: Artifact, report: ModelReport) -> None:
    """Reads the IR's topology (OpenVINO parses the .xml, nothing runs): I/O with dynamic dims, op histogram, weights."""
    import numpy as np

    from edgeconv.targets.openvino.runtime import _dtype, read_model

    model = read_model(artifact)
    report.inputs = [TensorSpec(p.get_any_name(), _ov_dims(p), _dtype(p), not p.get_partial_shape().rank.is_dynamic)
                     for p in model.inputs]
    report.outputs = [TensorSpec(p.get_any_name(), _ov_dims(p), _dtype(p), not p.get_partial_shape().rank.is_dynamic)
                      for p in model.outputs]
    counts: Counter = Counter()
    by_dtype: Counter = Counter()
    params = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Parameter", "Result"):
            continue
        counts[kind] += 1
        if kind == "Constant":
            out = op.output(0)
            n = int(np.prod([int(d) for d in out.get_shape()], dtype=np.int64)) if len(out.get_shape()) else 1
            params += n
            by_dtype[_dtype(out)] += int(n * out.get_element_type().bitwidth // 8)
    report.ops = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    report.nodes = sum(counts.values())
    report.params = params
    report.bytes_by_dtype = dict(sorted(by_dtype.items(), key=lambda kv: -kv[1]))
    report.quantized = "FakeQuantize" in counts or "FakeConvert" in counts
    if model.has_rt_info(["MO_version"]):
        report.producer = f"OpenVINO {model.get_rt_info(['MO_version'])}"


def _openvino(path: Path) -> Inferred:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    layers = root.iter("layer")
    kinds: Counter = Counter()
    consts: Counter = Counter()
    for layer in layers:
        kinds[layer.get("type")] += 1
        if layer.get("type") == "Const":
            data = layer.find("data")
            if data is not None:
                consts[data.get("element_type", "")] += 1
    if kinds["FakeQuantize"]:
        return Inferred("int8", f"{plural(kinds['FakeQuantize'], 'FakeQuantize layer')}")
    low = sum(consts[t] for t in ("i8", "u8", "i4", "u4"))
    if low:
        return Inferred("w8", f"{plural(low, '8/4-bit integer weight constant')} (weight compression), no FakeQuantize")
    if consts["f16"]:
        return Inferred("fp16", f"{plural(consts['f16'], 'float16 constant')}")
    return Inferred("fp32", "float32 constants, no FakeQuantize")
