"""PyTorch (eager, CPU): runs PyTorch source models for validation."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes.base import Runtime, Session


def flatten_outputs(out: object) -> list[Any]:
    if isinstance(out, dict):
        return [v for value in out.values() for v in flatten_outputs(value)]
    if isinstance(out, (list, tuple)):
        return [v for value in out for v in flatten_outputs(value)]
    return [out]


class TorchSession(Session):
    def __init__(self, module: Any, ctx: StepContext):
        self.module = module
        self.inputs = ctx.source.inputs
        self.output_names = ctx.source.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = require("torch", "torch")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]
        try:
            with torch.no_grad():
                out = self.module(*args)
        except Exception as e:
            raise InvalidInputError(f"the PyTorch model failed on the samples: {first_line(e)}",
                                    "check --input-shape and the samples' shapes") from e
        return [t.detach().cpu().numpy() for t in flatten_outputs(out)]


class TorchRuntime(Runtime):
    name = "torch"
    formats = frozenset({Format.TORCH})
    extra = "torch"
    requires = ("torch",)
    runs_sources = True

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        require("torch", "torch")
        return TorchSession(ctx.source.handle(), ctx)
