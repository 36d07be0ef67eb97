"""`edgeconv quantize MODEL.onnx --mode int8|int16|fp16|dynamic -o OUT`: quantize an ONNX model on its own.

Normalises the graph, quantizes it with the mode's profile (or --target), checks the result, validates it against the
float model and applies the profile's gate, with accuracy-driven fallback. OUT ending in `.onnx` writes just that file
(atomically); any other OUT is an output directory with the model and manifest, as `edgeconv convert` writes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI
from edgeconv.errors import UsageError

MODES = {"int8": "onnx-int8-qdq", "int16": "onnx-int16-qdq", "fp16": "onnx-fp16", "dynamic": "onnx-dynamic"}


def register(app: typer.Typer) -> None:
    app.command("quantize", help="Quantize an ONNX model (int8 / int16 activations / fp16 / dynamic int8), check and "
                                 "validate it against the float model.")(quantize)


def quantize(
    model: Path = typer.Argument(..., help="The float ONNX model."),
    mode: str = typer.Option("int8", "--mode", "-m", help="int8 (QDQ, u8 act / s8 per-channel weights), int16 (W8A16), fp16, dynamic."),
    output: Path = typer.Option(..., "--output", "-o", help="OUT.onnx (one file) or an output directory (model + manifest)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Profile to take the scheme and gate from (default: by --mode), e.g. cpu-int8."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration data: folder of .npy/.npz or images, or 'random'."),
    eval_data: Optional[str] = typer.Option(None, "--eval", help="Validation samples (default: --calib)."),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="Image preprocessing, e.g. 'resize=224x224,mean=0.485,0.456,0.406,std=0.229,0.224,0.225'."),
    method: Optional[str] = typer.Option(None, "--method", help="Calibration method: minmax, entropy or percentile."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix an input's dims: NAME=1x3x224x224 (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Override a profile key: section.key=value (repeatable)."),
    max_fallback: Optional[int] = typer.Option(None, "--max-fallback", help="Most layers kept in higher precision to pass the gate (0: none)."),
    report: bool = typer.Option(False, "--report", help="Add the per-layer SNR table to the manifest."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither reuse nor store step outputs in the stage cache (~/.cache/edgeconv/stages; also EDGECONV_NO_CACHE=1)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (the manifest, or the error) on stdout."),
) -> None:
    from edgeconv.context import ConvertOptions, parse_input_shapes
    from edgeconv.formats import Format, detect
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    if mode not in MODES:
        raise UsageError(f"unknown --mode {mode!r}", f"use one of {', '.join(MODES)}")
    artifact = detect(model)
    if artifact.format != Format.ONNX:
        raise UsageError(f"{model} is {artifact.format}, not ONNX",
                         f"use `edgeconv convert {model} --target {MODES[mode]} -o OUT` for non-ONNX sources")
    profile = resolve(target or MODES[mode])
    overrides = list(set_) + ([f"quantize.method={method}"] if method else [])
    options = ConvertOptions(input_shapes=parse_input_shapes(input_shape), calib=calib, eval=eval_data,
                             preprocess=preprocess, overrides=tuple(overrides), max_fallback=max_fallback, report=report,
                             no_cache=no_cache)
    single_file = output.suffix.lower() == ".onnx"
    if single_file:
        _check_file_output(output, force)
    else:
        from edgeconv.outputs import check_output_path

        check_output_path(output, force)
    plan = build_plan(artifact, [profile], options)
    if not single_file:
        manifest = run(plan, output, force=force, reporter=UI.reporter())
        _show(manifest.to_json(), output)
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.absolute().parent))
    try:
        manifest = run(plan, staging / "out", reporter=UI.reporter())
        data = manifest.to_json()
        produced = [a for a in data["targets"][0]["artifacts"] if a["role"] == "model"]
        os.replace(staging / "out" / produced[0]["path"], output)
        produced[0]["path"] = str(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _show(data, output)


def _check_file_output(output: Path, force: bool) -> None:
    from edgeconv.outputs import io_error

    if output.is_dir():
        raise UsageError(f"{output} is a directory", "give OUT.onnx, or a directory name without the .onnx suffix")
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", "pass --force to replace it")
    try:
        output.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise io_error(e, f"creating {output.parent}") from e


def _show(manifest: dict[str, Any], output: Path) -> None:
    if UI.json_mode:
        UI.emit_json(manifest)
        return
    from edgeconv.cli.tables import manifest_table

    UI.out.print(manifest_table(manifest, output))
    for target in manifest["targets"]:
        q = target.get("notes", {}).get("quantize") or {}
        check = q.get("check") or {}
        if check:
            UI.out.print(f"size {check.get('quant_bytes')} B = {check.get('size_ratio', 0):.3f}x of float "
                         f"({check.get('float_bytes')} B); graph valid; no float weights left where integer was asked")
        fb = q.get("fallback") or {}
        for node in fb.get("nodes", []):
            UI.out.print(f"kept in {fb.get('precision')}: {node['tensor']} ({node['op_type']}) "
                         f"+{node['gain']:.1f} → SNR {node['snr_db_after']} dB")
