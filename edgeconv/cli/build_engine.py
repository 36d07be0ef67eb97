"""`edgeconv build-engine MODEL.onnx`: build the TensorRT engine for a TensorRT-ready ONNX (what a tensorrt-* target
writes on a machine without a GPU), on the machine with the NVIDIA GPU the engine is for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI


def register(app: typer.Typer) -> None:
    app.command("build-engine", help="Build a TensorRT engine (.engine) from a TensorRT-ready ONNX written by a tensorrt-* "
                                     "target; needs an NVIDIA GPU and `pip install 'edgeconv\\[tensorrt]'` (exit 4 without).")(build_engine)


def build_engine(
    model: Path = typer.Argument(..., help="The TensorRT-ready ONNX, e.g. OUTDIR/tensorrt-int8/model.onnx."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Engine file (default: MODEL with .engine)."),
    shape_range: list[str] = typer.Option([], "--shape-range", help="Dynamic shapes: NAME=min:opt:max dims (repeatable; "
                                                                   "default: the ranges recorded in the manifest)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache to reuse and update (default: "
                                                                              "next to the engine)."),
    workspace_mib: Optional[int] = typer.Option(None, "--workspace-mib", help="Builder workspace (default: the profile's)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    from edgeconv.cli.convert import _parse_shape_ranges
    from edgeconv.targets.tensorrt.onnx_to_tensorrt import build_engine_file
    from edgeconv.errors import InvalidInputError
    from edgeconv.formats import Format, detect

    artifact = detect(model)
    if artifact.format != Format.ONNX:
        raise InvalidInputError(f"{model} is {artifact.format}, not ONNX", "pass the .onnx a tensorrt-* target wrote")
    recorded = recorded_settings(model)
    ranges = _parse_shape_ranges(shape_range) or recorded["shape_ranges"]
    compiler = dict(recorded["compiler"])
    if workspace_mib is not None:
        compiler["workspace_mib"] = workspace_mib
    engine = output or model.with_suffix(".engine")
    with UI.reporter().task(f"building {engine.name}", total=None):
        result = build_engine_file(model, engine, shape_ranges=ranges, compiler=compiler, timing_cache=timing_cache)
    result["settings_from_manifest"] = recorded["manifest"]
    if UI.json_mode:
        UI.emit_json(result)
        return
    gpu = result.get("gpu", {})
    UI.out.print(f"[green]built[/green] {result['engine']} ({result['engine_bytes']} bytes) in {result['build_s']} s on "
                 f"{gpu.get('name', '?')} with TensorRT {result.get('tensorrt', '?')}"
                 f"{' (timing cache reused)' if result['timing_cache_reused'] else ''}")
    for warning in result["warnings"]:
        UI.err.print(f"[yellow]warning:[/yellow] {warning}")


def recorded_settings(model: Path) -> dict[str, Any]:
    """Shape ranges and [compiler] options the target used, from OUTDIR/manifest.json when MODEL came from a run."""
    from edgeconv.context import ShapeRange

    empty: dict[str, Any] = {"shape_ranges": {}, "compiler": {}, "manifest": None}
    manifest = model.resolve().parent.parent / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return empty
    target = model.resolve().parent.name
    for record in data.get("targets", []):
        notes = record.get("notes", {}).get("tensorrt")
        if record.get("target") == target and isinstance(notes, dict):
            ranges = {name: ShapeRange(*(tuple(d) for d in dims)) for name, dims in notes.get("shape_ranges", {}).items()}
            return {"shape_ranges": ranges, "compiler": notes.get("compiler", {}), "manifest": str(manifest)}
    return empty
