"""Reads ONNX artifacts (the hub format every family's ONNX output shares): I/O, ops and weights (edgeconv/inspect.py)
and precision from the Q/DQ, QOperator, dynamic and float16 nodes (edgeconv/precision.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.formats import Artifact, Format

if TYPE_CHECKING:
    from edgeconv.inspect import ModelReport
    from edgeconv.precision import Inferred


class OnnxReader(ArtifactReader):
    name = "onnx"
    format = Format.ONNX

    def inspect(self, artifact: Artifact, report: "ModelReport") -> None:
        from edgeconv.inspect import inspect_onnx

        inspect_onnx(artifact, report)

    def precision(self, artifact: Artifact) -> "Inferred | None":
        from edgeconv.precision import onnx_precision

        return onnx_precision(artifact.path)
