"""`edgeconv validate SOURCE ARTIFACT`: compare an existing artifact with its source model and apply the target's gate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeconv.cli.ui import UI


def register(app: typer.Typer) -> None:
    app.command("validate", help="Run SOURCE and ARTIFACT on the same samples, print the metrics, and apply the target's "
                                 "accuracy gate (exit 5 when it fails, after printing the metrics).")(validate)


def validate(
    source: Path = typer.Argument(..., help="The source model (PyTorch / Keras / SavedModel / ONNX)."),
    artifact: Path = typer.Argument(..., help="The converted model, e.g. OUTDIR/onnx-fp16/model.onnx."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Profile whose runtime and gate apply (default: from the manifest beside ARTIFACT, else the built-in profile of the precision read from ARTIFACT)."),
    eval_data: Optional[str] = typer.Option(None, "--eval", help="Validation samples: folder of .npy/.npz (default: --calib, else generated). Labelled data (a folder per class of images, or .npz with a 'label' key) adds a task metric."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Task metric: top1, top5, miou, detection[:boxes=NAME,scores=NAME], or package.module:function(outputs, labels) -> float. Gated by validate.gate.max_task_drop."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Used as validation samples when --eval is not given."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix an input's dims: NAME=1x3x224x224 (repeatable)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="How many samples to compare (default: the profile's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a profile key, e.g. validate.gate.min_snr_db=40 (repeatable)."),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help="Load a model even if loading or running it runs code from the file: pickled modules, Keras Lambda layers, .pt2 pickled payloads, SavedModel file ops (--trust-pickle is an alias)."),
    custom_objects: list[str] = typer.Option([], "--custom-objects", help="Keras sources: import this module first (package.module, repeatable), so the classes it registers with keras.saving.register_keras_serializable load (a subclassed model, custom layers)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    from edgeconv.context import ConvertOptions, parse_input_shapes
    from edgeconv.revalidate import validate_artifact

    if metric is not None:
        from edgeconv.task_metrics import check_metric_option

        check_metric_option(metric, eval_data or (calib if calib != "random" else None))
    options = ConvertOptions(input_shapes=parse_input_shapes(input_shape), calib=calib, eval=eval_data, metric=metric,
                             trust_code=trust_code, custom_objects=tuple(custom_objects), overrides=tuple(set_))
    from edgeconv.errors import AccuracyGateError

    try:
        result = validate_artifact(source, artifact, options, target=target, samples=samples, reporter=UI.reporter())
    except AccuracyGateError as e:  # the metrics it measured, then the error line (exit 5); --json: in error.details
        if not UI.json_mode and e.details.get("validation"):
            _print_report(e.details)
        raise
    if UI.json_mode:
        UI.emit_json(result)
        return
    _print_report(result)


def _print_report(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgeconv.cli.tables import human_bytes

    inferred = result.get("inferred")
    if inferred and inferred.get("precision"):
        UI.out.print(f"precision {inferred['precision']} inferred from {escape(Path(result['artifact']).name)} "
                     f"(no manifest beside it): {escape(inferred['reason'])}; gate of {inferred['profile']}")
    v = result["validation"]
    metrics = v.get("metrics") or {}
    runtime = f"{v['runtime']} ({v['stand_in']})" if v.get("stand_in") else v["runtime"]
    title = f"{Path(result['artifact']).name} vs {Path(result['source']).name} — {result['target']} on {runtime}"
    if v["kind"] == "numerical":
        table = Table(title=title, title_justify="left")
        for col in ("output", "SNR dB", "cosine", "max abs", "top-1"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for out in metrics.get("outputs", []):
            table.add_row(out.get("name", ""), _f(out.get("snr_db"), ".1f"), _f(out.get("cosine"), ".6f"),
                          _f(out.get("max_abs"), ".3g"), _f(out.get("top1_agreement"), ".3f"))
        UI.out.print(table)
        samples_info = v.get("samples") or {}
        UI.out.print(f"{samples_info.get('count', '?')} samples ({samples_info.get('kind', '?')}); gate "
                     + ", ".join(f"{k}={val}" for k, val in (v.get("gate") or {}).items() if val is not None)
                     + (f"; size {human_bytes(result['shipped_bytes'])}" if result.get("shipped_bytes") else ""))
        if v.get("task"):
            from edgeconv.task_metrics import summary

            task = v["task"]
            UI.out.print(f"task: {escape(summary(task))} (drop {task['drop']:.3g} {task['unit']}, on "
                         f"{task['samples']} samples against {task['reference']})")
    else:
        UI.out.print(f"{title}: structural check ({v.get('note', '')})")
    UI.out.print("[green]passed[/green]" if v["passed"] else "[red]failed[/red]")
    for w in result.get("warnings", []):
        UI.err.print(f"[yellow]warning:[/yellow] {escape(w)}")


def _f(value: object, spec: str) -> str:
    return "—" if value is None else format(value, spec)
