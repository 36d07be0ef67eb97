"""TensorFlow / Keras (CPU): runs Keras and SavedModel source models for validation."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes.base import Runtime, Session


class TensorFlowSession(Session):
    def __init__(self, function: Any, ctx: StepContext):
        self.function = function
        self.inputs = ctx.source.inputs
        self.output_names = ctx.source.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            outputs = self.function({s.name: feeds[s.name] for s in self.inputs})
        except Exception as e:
            raise InvalidInputError(f"the TensorFlow model failed on the samples: {first_line(e)}",
                                    "check --input-shape and the samples' shapes") from e
        return [np.asarray(o) for o in outputs]


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    formats = frozenset({Format.KERAS, Format.SAVEDMODEL})
    extra = "tf"
    requires = ("tensorflow",)
    runs_sources = True

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        return TensorFlowSession(ctx.source.handle(), ctx)
