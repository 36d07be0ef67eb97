"""ONNX → Core ML: not possible; this edge says so (exit 4) with the routes that exist.

coremltools removed its ONNX front end (coremltools 6); it converts PyTorch and TensorFlow/Keras only. The ONNX →
PyTorch libraries were considered and not used: onnx2torch (last release 2024) imports torchvision at import time, and
a round trip through a regenerated PyTorch module would be validated against a different model than the user's. This
edge exists so that an ONNX source asking for a Core ML target gets that explanation instead of "no route": planning
stops with exit 4 (also under --dry-run), before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeconv.context import StepContext
from edgeconv.converters.base import Converter
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

HINT = ("convert the original model instead: a PyTorch .pt2 (torch.export.save) / TorchScript / --model factory, or a "
        "Keras .keras/.h5 / SavedModel, e.g. `edgeconv convert model.pt2 --target coreml-fp32`")


class OnnxToCoreml(Converter):
    name = "onnx_to_coreml"
    source = Format.ONNX
    target = Format.COREML
    extra = "coreml"
    requires = ("coremltools",)
    cost = 1000
    stage = "compile"
    unsupported_reason = "Core ML cannot be built from an ONNX model (coremltools has no ONNX front end)"
    unsupported_hint = HINT

    def refuses(self, artifact: Artifact, profile: "Profile") -> str | None:
        if artifact.format != Format.ONNX:  # PyTorch / Keras sources convert directly, never through ONNX
            return "coremltools has no ONNX front end"
        return None

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        raise UnsupportedError(f"target {ctx.profile.name}: {self.unsupported_reason}", HINT,
                               details={"source_format": "onnx", "target_format": "coreml"})
