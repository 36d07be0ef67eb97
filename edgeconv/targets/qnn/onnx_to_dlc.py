"""ONNX (QDQ or float16) → Qualcomm DLC, serialised from the QNN graph by the QNN IR backend (`dump_qnn_ir_dlc`) of the
onnxruntime-qnn execution provider — the same graph the HTP context binary is compiled from (legalised the same way).
A DLC is portable across Snapdragon parts (SNPE / QNN tools prepare it on the device or with qnn-context-binary-generator).

Sanity check after writing: the file is a DLC archive (zip) holding `model`, `model.params` and its metadata JSON
(`dlc.metadata*`: artifact_type DLC_METADATA, version), and the whole graph went into one DLC.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeconv.context import StepContext
from edgeconv.targets.qnn._ep import htp_options, qnn_module, qnn_session, read_dlc, stabilise_dlc
from edgeconv.targets.qnn._compile import staged
from edgeconv.targets.qnn._legalise import legalise_for_htp
from edgeconv.converters.base import Converter
from edgeconv.onnx_graph import stem_of
from edgeconv.targets.qnn.onnx_to_qnn import require_static
from edgeconv.errors import StepSkipped, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format

NOTES_KEY = "dlc"
REQUIRED_ENTRIES = ("model", "model.params")


def check_dlc(path: Path) -> dict[str, Any]:
    """Structure of a DLC: entries, metadata (artifact type, version, converter). Raises UnsupportedError if it is not
    a usable DLC."""
    entries = read_dlc(path)
    missing = [e for e in REQUIRED_ENTRIES if e not in entries]
    meta_name = next((n for n in entries if n.startswith("dlc.metadata") and "history" not in n), None)
    if missing or meta_name is None:
        raise UnsupportedError(f"{path.name} is missing DLC entries: {', '.join(missing) or 'dlc.metadata'}",
                               "this is a bug in the QNN IR backend or edgeconv")
    try:
        header = json.loads(entries[meta_name])["header"]
    except (ValueError, KeyError) as e:
        raise UnsupportedError(f"{path.name}: unreadable DLC metadata {meta_name}", "this is a bug") from e
    if header.get("artifact_type") != "DLC_METADATA":
        raise UnsupportedError(f"{path.name}: metadata artifact_type is {header.get('artifact_type')!r}", "this is a bug")
    history = next((n for n in entries if n.startswith("dlc.metadata.history")), None)
    tool = {}
    if history:
        with_info = json.loads(entries[history]).get("dlcGenerationInfo") or [{}]
        tool = with_info[-1].get("converterCommand", {})
    version = header.get("version", {})
    return {"entries": sorted(entries), "metadata": meta_name,
            "dlc_version": ".".join(str(version.get(k, "?")) for k in ("major", "minor", "patch")),
            "generator": f"{tool.get('tool', '?')} {tool.get('converterVersion', '')}".strip(),
            "model_bytes": len(entries["model"]), "params_bytes": len(entries.get("model.params.bin", b""))}


class OnnxToDlc(Converter):
    name = "onnx_to_dlc"
    source = Format.ONNX
    target = Format.DLC
    extra = "qnn"
    requires = ("onnxruntime_qnn", "onnxruntime", "onnx")
    cost = 10
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        qnn = qnn_module()
        require_static(artifact.path)
        legal, _ = legalise_for_htp(artifact.path, ctx.work_dir / "legal.onnx")
        out = ctx.work_dir / f"{stem_of(ctx.source.artifact.path)}.dlc"
        with tempfile.TemporaryDirectory(prefix="edgeconv-dlc-", dir=ctx.work_dir) as tmp, \
                staged(legal, f"{stem_of(ctx.source.artifact.path)}.onnx") as model:  # the graph name hashes the model's path: keep it fixed
            options = htp_options(None, dump_qnn_ir_dlc=1, dump_qnn_ir_dlc_dir=tmp,
                                  qnn_ir_backend_path=os.path.join(qnn.LIB_DIR_FULL_PATH, "libQnnIr.so"))
            try:
                session = qnn_session(model, options, log_level=4)  # the IR backend serialises; it cannot run
                del session
            except Exception as e:
                raise UnsupportedError(f"the QNN IR backend could not serialise the model to DLC: {first_line(e)}",
                                       "see the placement report of the hexagon target") from e
            dlcs = sorted(Path(tmp).glob("*.dlc"))
            if len(dlcs) != 1:
                reason = (f"no DLC: the QNN IR backend split the model into {len(dlcs)} graphs around nodes that are not "
                          "QNN ops, and a DLC must hold the whole model")
                hint = "fold or remove the nodes the placement report lists"
                if ctx.options.allow_cpu_fallback:
                    raise StepSkipped(reason, hint)
                raise UnsupportedError(reason, hint)
            shutil.move(str(dlcs[0]), out)
        stabilise_dlc(out)  # same graph and versions → same bytes (the metadata timestamps are fixed)
        ctx.notes[NOTES_KEY] = check_dlc(out)
        return Artifact(out, Format.DLC)
