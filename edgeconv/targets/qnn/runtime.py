"""Qualcomm HTP simulator (onnxruntime-qnn on x86-64): runs QNN context binaries (EPContext models) as the Hexagon NPU
computes them — quantized kernels, HTP float16 — with float I/O. The EP's silent CPU fallback is disabled, so a model
that does not run on the HTP fails here instead of being compared CPU against CPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.runtimes.base import Runtime, Session


class QnnHtpSession(Session):
    def __init__(self, session: Any):
        self.session = session
        from edgeconv.runtimes.ort import value_info_spec_from_ort

        self.inputs = tuple(value_info_spec_from_ort(i) for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [i.name for i in self.inputs if i.name not in feeds]
        if missing:
            raise InvalidInputError(f"no sample for input(s) {', '.join(missing)}", f"samples have: {', '.join(feeds)}")
        dtypes = {i.name: i.dtype for i in self.inputs}
        try:
            out = self.session.run(None, {i.name: feeds[i.name].astype(dtypes[i.name], copy=False) for i in self.inputs})
        except Exception as e:
            raise InvalidInputError(f"the HTP simulator failed to run the model: {first_line(e)}",
                                    "check that the samples' shapes match the model's (static) inputs") from e
        return [np.asarray(o, dtype=np.float32) if np.asarray(o).dtype == np.float16 else o for o in out]


class QnnHtpRuntime(Runtime):
    name = "qnn_htp"
    formats = frozenset({Format.QNN_CONTEXT})
    extra = "qnn"
    requires = ("onnxruntime_qnn", "onnxruntime")

    @classmethod
    def accelerator_share(cls, notes: dict[str, Any]) -> str:
        """'HTP 100%': the nodes the QNN placement report put on the HTP."""
        placement = (notes.get("hexagon") or {}).get("placement") or {}
        if placement.get("total"):
            return f"HTP {100 * placement.get('on_htp', 0) / placement['total']:.0f}%"
        return ""

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        from edgeconv.targets.qnn._ep import htp_options, qnn_session

        try:
            session = qnn_session(artifact.path, htp_options(None),
                                  None if ctx.options.allow_cpu_fallback else {"session.disable_cpu_ep_fallback": 1})
        except Exception as e:
            raise InvalidInputError(f"the HTP simulator cannot load {artifact.path.name}: {first_line(e)}",
                                    "the context binary must sit beside its _ctx.onnx model") from e
        return QnnHtpSession(session)
