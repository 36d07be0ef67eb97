"""Reads ExecuTorch programs (.pte): their inputs and outputs from the program's method metadata (executorch's own
loader, nothing runs). `inspect` lists the format as recognised only; the precision is not read from the file."""

from __future__ import annotations

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.formats import Artifact, Format, TensorSpec


class ExecuTorchReader(ArtifactReader):
    name = "executorch"
    format = Format.EXECUTORCH
    inspects = False

    def io(self, artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        from edgeconv.targets.executorch.runtime import pte_io

        return pte_io(artifact)
