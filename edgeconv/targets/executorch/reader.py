"""Reads ExecuTorch programs (.pte): their inputs and outputs from the program's method metadata (executorch's own
loader, nothing runs). `inspect` lists the format as recognised only; the precision is not read from the file."""

from __future__ import annotations

from pathlib import Path

from edgeconv.artifact_readers import ArtifactReader
from edgeconv.formats import Artifact, Format, TensorSpec


class ExecuTorchReader(ArtifactReader):
    name = "executorch"
    format = Format.EXECUTORCH
    inspects = False

    def sniff(self, path: Path, head: bytes) -> Artifact | None:
        """A .pte flatbuffer: its file identifier at bytes 4-8 is "ET" and two digits ("ET12")."""
        return Artifact(path, Format.EXECUTORCH) if len(head) >= 8 and head[4:6] == b"ET" and head[6:8].isdigit() else None

    def io(self, artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        from edgeconv.targets.executorch.runtime import pte_io

        return pte_io(artifact)
