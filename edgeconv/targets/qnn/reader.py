"""Reads QNN context models (EPContext ONNX): I/O through the ONNX reader (the wrapper's inputs and outputs), and the
precision of the graph that was compiled into the opaque context binary, which ships beside it (`<stem>.int8.onnx`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.formats import Artifact, Format
from edgeconv.precision import Inferred, onnx_precision

if TYPE_CHECKING:
    from edgeconv.inspect import ModelReport


class QnnContextReader(ArtifactReader):
    name = "qnn_context"
    format = Format.QNN_CONTEXT
    inspects = False  # `inspect` shows the wrapper only as recognised: its ops are inside the context binary

    def inspect(self, artifact: Artifact, report: "ModelReport") -> None:
        """The EPContext wrapper read as ONNX: its inputs and outputs (what the base io() takes from here)."""
        from edgeconv.inspect import inspect_onnx

        inspect_onnx(artifact, report)

    def precision(self, artifact: Artifact) -> Inferred:
        return _qnn_context(artifact.path)


def _qnn_context(path: Path) -> Inferred:
    """The context binary is opaque; the graph that was compiled into it ships beside it as <stem>.<precision>.onnx."""
    stem = path.stem[:-4] if path.stem.endswith("_ctx") else path.stem
    for compiled in sorted(path.parent.glob(f"{stem}.*.onnx")):
        if compiled.resolve() == path.resolve():
            continue
        found = onnx_precision(compiled)
        if found.precision is not None:
            return Inferred(found.precision, f"its compiled graph {compiled.name}: {found.reason}")
    return Inferred(None, f"an EPContext model without its compiled graph ({stem}.<precision>.onnx) beside it")
