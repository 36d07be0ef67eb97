"""The runtime the mixed-precision search judges its trials on: the target's own where edgeconv can run it here.

ONNX Runtime's CPU kernels and the Hexagon HTP compute the same QDQ graph differently (the HTP folds requantisation,
fixes some encodings, rounds in its own order): MobileNetV2 at hexagon-int8 agreed 32/32 with the float model on ORT
CPU and 31/32 on the HTP simulator, so a search judged on ORT never started and the run failed its gate. With
`[quantize.options] score_on = "target"`, the search measures the base model and every step it keeps on the profile's
validation runtime; candidates are still ranked on ORT CPU (cheap), and each greedy step the search tries is compiled
for the part once (at most `fallback_candidates` compiles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from edgeconv.errors import UnsupportedError, first_line

SCORE_ON = ("ort", "target")


class TargetUnavailable(Exception):
    """The target's runtime cannot run this QDQ graph (e.g. nodes the HTP refuses): the search scores on ONNX Runtime
    instead, and the converter's own checks report the graph with their exit code."""


def session_factory(ctx: Any) -> Callable[[Path], Any] | None:
    """A function QDQ path → session with ONNX Runtime's run() API on the profile's validation runtime; None when the
    profile scores on ORT CPU (the default) or its runtime is ORT anyway."""
    choice = str(ctx.profile.quantize.options.get("score_on", "ort"))
    if choice not in SCORE_ON:
        raise UnsupportedError(f"[quantize.options] score_on = {choice!r} is not known", f"use one of {', '.join(SCORE_ON)}")
    if choice == "ort":
        return None
    runtime = ctx.profile.validate.runtime
    if runtime == "qnn_htp":
        return _htp_sessions(ctx)
    return None  # onnxruntime (or a runtime without a QDQ-graph path here): ORT CPU is the target's own


def _htp_sessions(ctx: Any) -> Callable[[Path], Any]:
    from edgeconv.targets.qnn.htp import htp_options, legalise_for_htp, qnn_session, soc_for

    options = htp_options(soc_for(ctx))
    config = None if ctx.options.allow_cpu_fallback else {"session.disable_cpu_ep_fallback": 1}

    def open_session(qdq: Path) -> Any:
        legal, _ = legalise_for_htp(qdq, qdq.with_name(qdq.stem + ".htp.onnx"))
        try:
            return qnn_session(legal, options, config)  # compiles the graph for the part, then runs on the simulator
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types (Fail, InvalidGraph...)
            if not type(e).__module__.startswith("onnxruntime"):
                raise  # a bug of ours, not the target refusing the graph
            raise TargetUnavailable(first_line(e)) from e

    return open_session
