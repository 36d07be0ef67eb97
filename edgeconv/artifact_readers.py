"""What edgeconv reads from a converted artifact's file without running it: its inputs and outputs (`bench` and
`validate` on a bare artifact), what `inspect` shows, and its precision (the gate `validate` applies). One reader per
artifact format, in that format's family folder (`targets/<family>/reader.py`), found by discovery like every plugin:
a new family's format needs no code outside its folder here."""

from __future__ import annotations

from abc import ABC
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeconv.formats import Artifact, Format, TensorSpec

if TYPE_CHECKING:
    from edgeconv.inspect import ModelReport
    from edgeconv.precision import Inferred


class ArtifactReader(ABC):
    name: ClassVar[str] = ""
    format: ClassVar[Format]
    inspects: ClassVar[bool] = True  # False: `inspect` says the format is recognised but not looked into

    def sniff(self, path: Path, head: bytes) -> Artifact | None:
        """This format's artifact when `path` holds one (by content: `head` is its first 64 bytes), else None. Only
        the formats formats.detect does not know itself (a family's own) answer; raise InvalidInputError for a file
        that is this format but unusable (e.g. an IR without its weights)."""
        return None

    def inspect(self, artifact: Artifact, report: "ModelReport") -> None:
        """Fill `report` (I/O, op histogram, weights by dtype) from the file."""
        raise NotImplementedError(f"{self.name} does not look into {self.format.value} files")

    def io(self, artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        """The artifact's own inputs and output names (default: what inspect() reads)."""
        from edgeconv.inspect import ModelReport

        report = ModelReport(str(artifact.path), artifact.format.value, artifact.variant, 0, [], [])
        self.inspect(artifact, report)
        return tuple(report.inputs), tuple(s.name for s in report.outputs)

    def precision(self, artifact: Artifact) -> "Inferred | None":
        """The precision the file says it computes in, or None when it does not say."""
        return None


@lru_cache(maxsize=1)
def _readers() -> dict[Format, ArtifactReader]:
    from edgeconv.registry import FAMILIES, discover

    found = discover(FAMILIES, ArtifactReader)
    return {cls.format: cls() for cls in found}


def sniff(path: Path, head: bytes) -> Artifact | None:
    """The artifact a family's reader recognises in `path` (formats.detect asks after its own checks), or None."""
    for reader in _readers().values():
        found = reader.sniff(path, head)
        if found is not None:
            return found
    return None


def reader_for(fmt: Format) -> ArtifactReader | None:
    """The reader of `fmt`'s artifacts, or None (source formats: their framework loaders read them)."""
    return _readers().get(fmt)
