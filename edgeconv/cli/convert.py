"""`edgeconv convert SOURCE --target NAME [--target NAME ...] -o OUTDIR`"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI
from edgeconv.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command(
        "convert",
        help="Convert SOURCE for one or more targets, validate each against the source, and write artifacts + manifest.",
    )(convert)


def convert(
    source: Optional[Path] = typer.Argument(None, help="Model file or SavedModel dir (format detected by content). With --model: optional weights file."),
    target: list[str] = typer.Option([], "--target", "-t", help="Target profile name or ./profile.toml (repeatable). See `edgeconv targets`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output directory (created atomically)."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix an input's dims: NAME=1x3x224x224 (repeatable)."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration data: folder of .npy/.npz (or images), or 'random'."),
    eval_data: Optional[str] = typer.Option(None, "--eval", help="Validation samples: folder of .npy/.npz (default: --calib, else generated). Labelled data (a folder per class of images, or .npz with a 'label' key) adds a task metric."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Task metric: top1, top5, miou, detection[:boxes=NAME,scores=NAME], or package.module:function(outputs, labels) -> float. Gated by validate.gate.max_task_drop."),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="Image preprocessing, e.g. 'resize=224x224,scale=1/255,layout=nchw'."),
    model: Optional[str] = typer.Option(None, "--model", help="PyTorch factory: package.module:function returning an nn.Module."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="state_dict for --model (loaded with weights_only=True)."),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help="Load a model even if loading or running it runs code from the file: pickled modules, Keras Lambda layers, .pt2 pickled payloads, SavedModel file ops (--trust-pickle is an alias)."),
    custom_objects: list[str] = typer.Option([], "--custom-objects", help="Keras sources: import this module first (package.module, repeatable), so the classes it registers with keras.saving.register_keras_serializable load (a subclassed model, custom layers)."),
    set_: list[str] = typer.Option([], "--set", help="Override a profile key: section.key=value (repeatable)."),
    soc: Optional[str] = typer.Option(None, "--soc", help="Hexagon targets: Snapdragon part, e.g. '8 Gen 3', sm8650, 8gen3."),
    allow_cpu_fallback: bool = typer.Option(False, "--allow-cpu-fallback", help="NPU targets: accept nodes that fall back to the CPU."),
    shape_range: list[str] = typer.Option([], "--shape-range", help="TensorRT dynamic shapes: NAME=min:opt:max dims (repeatable)."),
    require_engine: bool = typer.Option(False, "--require-engine", help="TensorRT: fail (exit 4) if the engine cannot be built here."),
    max_fallback: Optional[int] = typer.Option(None, "--max-fallback", help="Most nodes (Core ML palettes: weights) kept in higher precision to pass the gate (0: none)."),
    report: bool = typer.Option(False, "--report", help="Add a per-layer accuracy report to the manifest."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep intermediate files of every stage in OUTDIR/.work; on a failed run OUTDIR then holds only .work/ (unless it held an earlier result)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither reuse nor store step outputs in the stage cache (~/.cache/edgeconv/stages; also EDGECONV_NO_CACHE=1)."),
    output_names: Optional[str] = typer.Option(None, "--output-names", help="PyTorch sources: names for the outputs, comma-separated in order (e.g. boxes,scores,labels); torch.onnx would call them getitem_3, mul, ..."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="A failing target does not discard the others: write the ones that pass, list the failures in the manifest, exit with the worst code."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (the manifest, or the error) on stdout."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (route and stages per target, and the fallback route a target takes if its first converter refuses the model) and stop."),
    force: bool = typer.Option(False, "--force", help="Replace OUTDIR if it exists (atomically)."),
) -> None:
    from edgeconv.context import ConvertOptions, parse_input_shapes
    from edgeconv.formats import TORCH_FACTORY, Artifact, Format, detect
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    if not target:
        raise UsageError("no --target given", "e.g. --target onnx; list them with `edgeconv targets`")
    if source is None and model is None:
        raise UsageError("no SOURCE given", "pass a model file, or --model package.module:function")
    if output is None and not dry_run:
        raise UsageError("no output directory given", "pass -o OUTDIR")
    if model is not None:  # a malformed pkg.module:function is a usage error (exit 2), found before any work
        from edgeconv.sources.user_code import parse_factory_spec

        parse_factory_spec(model)
    for name in custom_objects:
        from edgeconv.sources.user_code import parse_module_name

        parse_module_name(name, "--custom-objects", "mypkg.layers")
    if metric is not None:  # the same for --metric; a plugin is imported now (exit 3), not after the conversion
        from edgeconv.task_metrics import check_metric_option

        check_metric_option(metric, eval_data or (calib if calib != "random" else None))
    profiles = [resolve(t) for t in dict.fromkeys(target)]
    if soc is not None:  # an unknown part fails now (exit 2, parts listed), not after export and calibration
        from edgeconv.targets.qnn.socs import resolve_soc

        resolve_soc(soc)
    options = ConvertOptions(
        input_shapes=parse_input_shapes(input_shape), calib=calib, eval=eval_data, metric=metric, preprocess=preprocess,
        model_factory=model, weights=weights if weights is not None else (source if model else None),
        trust_code=trust_code, custom_objects=tuple(custom_objects), overrides=tuple(set_), soc=soc, allow_cpu_fallback=allow_cpu_fallback,
        shape_ranges=_parse_shape_ranges(shape_range), require_engine=require_engine, max_fallback=max_fallback,
        report=report, keep_work=keep_work, no_cache=no_cache, keep_going=keep_going,
        output_names=_parse_output_names(output_names),
    )
    if output is not None and not dry_run:
        from edgeconv.outputs import check_output_path, factory_paths

        inputs = (*(p for p in (source, calib, eval_data, weights) if p and p != "random"),
                  *(p.source_file for p in profiles if p.source_file), *factory_paths(model))
        check_output_path(output, force, inputs)  # before any (slow) loading
    if model is not None:
        artifact = Artifact(options.weights or Path(model.split(":")[0].replace(".", "/") + ".py"), Format.TORCH, TORCH_FACTORY)
    else:
        assert source is not None
        artifact = detect(source)
    if options.output_names and artifact.format != Format.TORCH:
        raise UsageError(f"--output-names is for PyTorch sources; {source} is {artifact.format} and names its outputs itself",
                         "drop --output-names (the manifest uses the model's own output names)")
    plan = build_plan(artifact, profiles, options)
    if dry_run:
        _show_plan(plan)
        return
    assert output is not None
    from edgeconv.errors import TargetsFailed

    try:
        manifest = run(plan, output, force=force, reporter=UI.reporter()).to_json()
    except TargetsFailed as partial:  # --keep-going: the table of what was written, then the error (its exit code)
        if not UI.json_mode:
            _print_table(partial.details["manifest"], output)
        raise
    if UI.json_mode:
        UI.emit_json(manifest)
    else:
        _print_table(manifest, output)


def _print_table(manifest: dict[str, Any], output: Path) -> None:
    from edgeconv.cli.tables import manifest_table

    UI.out.print(manifest_table(manifest, output))


def _parse_output_names(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise UsageError(f"bad --output-names {text!r}: empty or repeated names", "use e.g. --output-names boxes,scores,labels")
    return names


def _parse_shape_ranges(items: list[str]) -> dict[str, Any]:
    from edgeconv.context import ShapeRange, parse_dims

    out = {}
    for item in items:
        name, _, spec = item.rpartition("=")
        parts = spec.split(":")
        if not name or len(parts) != 3:
            raise UsageError(f"bad --shape-range {item!r}", "use NAME=1x3x224x224:4x3x224x224:8x3x224x224 (min:opt:max)")
        out[name] = ShapeRange(*(parse_dims(p) for p in parts))
    return out


def _show_plan(plan: Any) -> None:
    if UI.json_mode:
        UI.emit_json({"plan": plan.to_json()})
        return
    from rich.table import Table

    src = plan.source
    UI.out.print(f"[bold]source[/bold] {src.artifact.path} ({src.artifact.format}{'/' + src.artifact.variant if src.artifact.variant else ''})")
    for spec in src.inputs:
        UI.out.print(f"  input {spec.name}: {spec.shape_str()} {spec.dtype}")
    for target in plan.targets:
        table = Table(title=f"plan for {target.profile.name}", show_header=True, title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("stage")
        for i, step in enumerate(target.steps, 1):
            table.add_row(str(i), step.describe())
        if target.fallback:  # tried when the first route's converter refuses the model
            table.add_row("", f"[dim]if {target.first_converter()} refuses the model (exit 4), this route instead:[/dim]")
            for i, step in enumerate(target.fallback, 1):
                table.add_row(f"f{i}", step.describe())
        UI.out.print(table)
