"""ONNX (QDQ or float16) → QNN HTP context binary for one Snapdragon part, as an EPContext model: `<stem>_ctx.onnx`
(one `EPContext` node per HTP partition) beside the binary it names (`<stem>_ctx_qnn.bin`). Compiled offline by the
onnxruntime-qnn execution provider (`ep.context_enable`), no device or cloud involved.

Before compiling: static shapes are enforced, the QDQ graph is legalised for the HTP (qnn/_legalise.py), and the
placement report (qnn/_placement.py) lists every node the HTP would not take, with the reason. Any such node stops the
run (exit 4) unless --allow-cpu-fallback. After compiling, the context model is reloaded and run once on the HTP
simulator (a binary that does not load is never written out). The (legalised) ONNX graph that was compiled ships as a
companion (`<stem>.int8.onnx` / `.int16.onnx` / `.fp16.onnx`): the DLC is made from the same graph.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.targets.qnn._compile import compile_in_subprocess
from edgeconv.targets.qnn._legalise import legalise_for_htp
from edgeconv.targets.qnn._placement import Placement, check_placement
from edgeconv.converters.base import Converter
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.onnx_graph import ort_numpy_dtype, read_io_specs, static_shape_error, stem_of
from edgeconv.targets.qnn.options import parse
from edgeconv.targets.qnn.socs import Soc, resolve_soc

log = logging.getLogger(__name__)
NOTES_KEY = "hexagon"


def soc_for(ctx: StepContext) -> Soc:
    """--soc, else the profile's `compiler.soc`, else Snapdragon 8 Gen 3."""
    return resolve_soc(ctx.options.soc or parse(ctx.profile).soc)


def require_static(model_path: Path) -> None:
    """NPUs need every dim fixed: name the dynamic inputs and the --input-shape fix (exit 3)."""
    dynamic = [s for s in read_io_specs(model_path).inputs if not s.is_static]
    if dynamic:
        raise static_shape_error("the Hexagon HTP", dynamic)


def require_fp16_support(model_path: Path, soc: Soc) -> None:
    import onnx

    if soc.fp16:
        return
    model = onnx.load_model(str(model_path), load_external_data=False)
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise UnsupportedError(f"{soc.label} has no float16 support on its HTP, and this model computes in float16",
                               "use hexagon-int8 or hexagon-int16 for this part, or pick an 8-series / X Elite --soc")


def placement_gate(placement: Placement, ctx: StepContext, what: str) -> None:
    """Refuse (exit 4, nodes listed) or accept with a warning (--allow-cpu-fallback) nodes left off the HTP."""
    if placement.complete:
        return
    message = f"{what}: {placement.summary()}; not on the HTP: {placement.table()}"
    if ctx.options.allow_cpu_fallback:
        ctx.warn(message + " (they run on the CPU: --allow-cpu-fallback)")
        return
    raise UnsupportedError(message, "normalise/fold them away, keep them out of the graph, or pass --allow-cpu-fallback "
                           "to let them run on the CPU", details={"placement": placement.to_json()})


def zero_feeds(session: Any) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for i in session.get_inputs():
        dtype = ort_numpy_dtype(i.type)
        dtype = np.float32 if dtype is None else dtype
        feeds[i.name] = np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape], dtype)
    return feeds


def check_context(ctx_model: Path, allow_cpu: bool) -> dict[str, Any]:
    """Sanity check of the compiled output: EPContext nodes naming an existing binary; reloads and runs once."""
    import onnx

    model = onnx.load_model(str(ctx_model))
    ep_nodes = [n for n in model.graph.node if n.op_type == "EPContext"]
    other = [f"{n.name} ({n.op_type})" for n in model.graph.node if n.op_type != "EPContext"]
    if not ep_nodes:
        raise UnsupportedError("the QNN EP compiled nothing: the context model has no EPContext node",
                               "see the placement report; no node of this model runs on the HTP")
    if other and not allow_cpu:
        raise UnsupportedError(f"the context model kept {len(other)} node(s) outside the HTP: {', '.join(other[:10])}",
                               "pass --allow-cpu-fallback to accept them")
    binaries = set()
    for node in ep_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("embed_mode", 1)) == 0 and attrs.get("ep_cache_context"):  # only main_context nodes name it
            binaries.add(attrs["ep_cache_context"].decode())
    for name in binaries:
        if not (ctx_model.parent / name).is_file():
            raise UnsupportedError(f"the context model names {name}, which was not written", "this is a bug")
    try:
        session = qnn_session(ctx_model, htp_options(None))
        outputs = session.run(None, zero_feeds(session))
    except Exception as e:
        raise UnsupportedError(f"the compiled context binary does not reload and run on the HTP simulator: {first_line(e)}",
                               "see docs/targets/hexagon.md (troubleshooting)") from e
    if any(not np.all(np.isfinite(np.asarray(o, dtype=np.float64))) for o in outputs if np.asarray(o).dtype.kind == "f"):
        raise UnsupportedError("the compiled model gives non-finite outputs on the HTP simulator for zero inputs",
                               "try hexagon-int16 or hexagon-fp16")
    return {"epcontext_nodes": len(ep_nodes), "cpu_nodes": other, "binaries": sorted(binaries), "reload_run": "ok"}


class OnnxToQnn(Converter):
    name = "onnx_to_qnn"
    source = Format.ONNX
    target = Format.QNN_CONTEXT
    extra = "qnn"
    requires = ("onnxruntime_qnn", "onnxruntime", "onnx")
    cost = 10
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        import onnx

        soc = soc_for(ctx)
        require_static(artifact.path)
        require_fp16_support(artifact.path, soc)
        stem = stem_of(ctx.source.artifact.path)
        legal, legal_report = legalise_for_htp(artifact.path, ctx.work_dir / "legal.onnx")
        placement = check_placement(legal, soc)
        notes: dict[str, Any] = {"soc": soc.to_json(), "placement": placement.to_json(), "legalised": legal_report.to_json()}
        ctx.notes[NOTES_KEY] = notes
        placement_gate(placement, ctx, f"{ctx.profile.name} for {soc.label}")
        out_dir = ctx.work_dir / "context"
        if out_dir.exists():  # the EP refuses to overwrite a context model
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        ctx_model = out_dir / f"{stem}_ctx.onnx"
        config: dict[str, Any] = {"ep.context_enable": 1, "ep.context_file_path": str(ctx_model), "ep.context_embed_mode": 0}
        if not ctx.options.allow_cpu_fallback:
            config["session.disable_cpu_ep_fallback"] = 1
        extra = parse(ctx.profile).provider_options()
        started = time.perf_counter()
        try:
            with ctx.reporter.task(f"compiling for {soc.label}", total=None):
                compile_in_subprocess(legal, ctx_model, htp_options(soc, **extra), config)
        except Exception as e:
            raise UnsupportedError(f"the QNN HTP compiler failed for {soc.label}: {first_line(e)}",
                                   "see the placement report in the manifest (notes.hexagon)") from e
        notes["compile_s"] = round(time.perf_counter() - started, 3)
        notes["context"] = check_context(ctx_model, ctx.options.allow_cpu_fallback)
        binaries = tuple(ctx_model.parent / b for b in notes["context"]["binaries"])
        compiled = out_dir / f"{stem}.{ctx.profile.quantize.precision}.onnx"  # the graph that was compiled
        onnx.save_model(onnx.load_model(str(legal)), str(compiled))
        notes["sizes"] = {"context_binary": sum(b.stat().st_size for b in binaries), "compiled_onnx": compiled.stat().st_size}
        return Artifact(ctx_model, Format.QNN_CONTEXT, companions=(*binaries, compiled))
