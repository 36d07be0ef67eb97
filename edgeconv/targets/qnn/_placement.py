"""Which nodes of an ONNX model the Hexagon HTP takes, and why it refuses the others: the QNN EP's own capability
check, read from its framework op trace (`enable_framework_op_trace`), which lists every unsupported node with the
reason the HTP op validation gave. Runs on the graph exactly as written (ORT optimisations off, see qnn/_ep.py)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line

TRACE_FILE = "qnn_op_trace.json"


@dataclass(frozen=True)
class Refused:
    node: str
    op_type: str
    reason: str


@dataclass
class Placement:
    soc: str
    total: int  # nodes in the model
    on_htp: int
    refused: list[Refused] = field(default_factory=list)
    partitions: int = 0  # HTP subgraphs (1 = the whole model is one HTP graph)
    session_error: str = ""

    @property
    def complete(self) -> bool:
        return not self.refused and self.on_htp == self.total

    @property
    def percent(self) -> float:
        return round(100.0 * self.on_htp / self.total, 1) if self.total else 100.0

    def summary(self) -> str:
        return f"{self.on_htp}/{self.total} nodes on the HTP ({self.percent}%) for {self.soc}"

    def table(self, limit: int = 20) -> str:
        lines = [f"{r.node} ({r.op_type}): {r.reason}" for r in self.refused[:limit]]
        if len(self.refused) > limit:
            lines.append(f"... and {len(self.refused) - limit} more (see the manifest)")
        return "; ".join(lines)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["percent"] = self.percent
        return out


def _node_names(model_path: Path) -> list[str]:
    import onnx

    model = onnx.load_model(str(model_path), load_external_data=False)
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)]


def check_placement(model_path: Path, soc: Any) -> Placement:
    """Ask the QNN EP which nodes of `model_path` it would place on the HTP of `soc`. Never raises for refused nodes:
    they are returned (a session that ends up with nothing placed fails to build, but the trace is written first)."""
    names = _node_names(model_path)
    with tempfile.TemporaryDirectory(prefix="edgeconv-qnn-trace-") as tmp:
        error = ""
        try:
            session = qnn_session(model_path, htp_options(soc, enable_framework_op_trace=1, framework_op_trace_dir=tmp),
                                  log_level=4)
            del session
        except Exception as e:  # noqa: BLE001 - onnxruntime raises plain RuntimeErrors; the trace says why
            error = first_line(e)
        trace_path = Path(tmp) / TRACE_FILE
        if not trace_path.exists():
            if "finalize QNN graph" in error:  # a valid graph the HTP backend could not build (audio_torchstft: its
                # STFT decomposition, QNN_COMMON_ERROR_MEM_ALLOC): a limit of the compiler, not bad input
                raise UnsupportedError(f"the QNN HTP compiler could not build the graph: {error}",
                                       "the backend's own error; run the model on a CPU target (onnx, cpu-int8) or "
                                       "rewrite the op it stops at; see docs/targets/hexagon.md")
            raise InvalidInputError(f"the QNN EP could not examine the model: {error or 'no op trace written'}",
                                    "check that the model is valid ONNX with static shapes")
        trace = json.loads(trace_path.read_text(encoding="utf-8"))
    refused: list[Refused] = []
    for item in trace.get("unsupported_nodes", []):
        name = item.get("node_name", "")
        if all(r.node != name for r in refused):  # nodes the layout transform inserted count too
            refused.append(Refused(name, item.get("op_type", "?"), item.get("reason", "").strip()))
    summary = trace.get("summary") or {}
    bad = {r.node for r in refused}
    placement = Placement(soc.label, len(names), sum(n not in bad for n in names), refused,
                          int(summary.get("qnn_subgraphs") or 0), error)
    if error and not refused:  # the session failed for another reason than placement: say so
        raise InvalidInputError(f"the QNN EP could not compile the model for {soc.label}: {error}",
                                "check the model with `edgeconv inspect`; see docs/targets/hexagon.md")
    return placement
