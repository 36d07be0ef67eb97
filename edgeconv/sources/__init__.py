"""Source models: load what the user gave (PyTorch / Keras / SavedModel / ONNX), know its inputs and outputs.

One module per framework; each defines a SourceLoader subclass for the formats it reads (registration is automatic).
The loaded framework object is created lazily and shared by the exporter and the source runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from edgeconv.context import ConvertOptions
from edgeconv.errors import InvalidInputError, UnsupportedError
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.registry import discover


class SourceLoader(ABC):
    name: ClassVar[str] = ""
    formats: ClassVar[frozenset[Format]] = frozenset()
    extra: ClassVar[str] = ""

    @abstractmethod
    def open(self, artifact: Artifact, options: ConvertOptions) -> "SourceModel":
        """Read enough of the model to know its inputs/outputs; may load it (the handle) right away."""

    @abstractmethod
    def load_handle(self, source: "SourceModel") -> Any:
        """The framework object (nn.Module, keras.Model, onnx path...)."""


@dataclass
class SourceModel:
    artifact: Artifact
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    framework: str  # "torch" | "tensorflow" | "onnx"
    loader: SourceLoader
    description: str = ""  # e.g. "pkg.mod:fn" for factories
    _handle: Any = field(default=None, repr=False)

    def handle(self) -> Any:
        if self._handle is None:
            self._handle = self.loader.load_handle(self)
        return self._handle

    def input_named(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def with_shapes(self, shapes: dict[str, tuple[int, ...]]) -> "SourceModel":
        """Fix input dims from --input-shape / profile defaults. Unknown input names: exit 3 listing the real names."""
        names = [s.name for s in self.inputs]
        unknown = [n for n in shapes if n not in names]
        if unknown:
            raise InvalidInputError(
                f"--input-shape names {', '.join(unknown)}, but the model's inputs are: {', '.join(names)}",
                f"use --input-shape {names[0]}=DIMS" if names else "the model has no inputs",
            )
        new_inputs = []
        for spec in self.inputs:
            if spec.name in shapes:
                dims = shapes[spec.name]
                if spec.rank_known and len(spec.shape) != len(dims):
                    raise InvalidInputError(
                        f"--input-shape {spec.name} has {len(dims)} dims, the model's input has {len(spec.shape)} "
                        f"({spec.shape_str()})",
                        f"give {len(spec.shape)} dims, e.g. {spec.name}={'x'.join('1' for _ in spec.shape)}",
                    )
                for i, (have, want) in enumerate(zip(spec.shape, dims)):
                    if isinstance(have, int) and have > 0 and have != want:
                        raise InvalidInputError(
                            f"--input-shape {spec.name}={'x'.join(map(str, dims))} conflicts with the model's fixed "
                            f"dim {i} = {have} ({spec.shape_str()})",
                            "only dynamic dims can be set",
                        )
                spec = replace(spec, shape=dims, rank_known=True)
            new_inputs.append(spec)
        out = replace(self, inputs=tuple(new_inputs))
        return out

    def dynamic_inputs(self) -> list[TensorSpec]:
        return [s for s in self.inputs if not s.is_static]


def _loaders() -> list[type[SourceLoader]]:
    return discover("edgeconv.sources", SourceLoader)  # type: ignore[type-abstract]  # only its subclasses are used


def open_source(artifact: Artifact, options: ConvertOptions) -> SourceModel:
    for loader in _loaders():
        if artifact.format in loader.formats:
            return loader().open(artifact, options)
    readable = sorted({f.value for loader in _loaders() for f in loader.formats})
    raise UnsupportedError(
        f"{artifact.path} is a {artifact.format} model, which edgeconv does not take as a source",
        f"sources can be: {', '.join(readable)}",
    )
