"""`edgeconv batch [CONFIG] -j N`: convert every (model, target) pair of edgeconv.toml / [tool.edgeconv] in parallel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI


def register(app: typer.Typer) -> None:
    app.command("batch", help="Convert every (model, target) pair of CONFIG (default: ./edgeconv.toml, else "
                              "\\[tool.edgeconv] in ./pyproject.toml), N at a time, skipping pairs whose inputs and "
                              "settings are unchanged. Exit code: the highest of the runs'.")(batch)


def batch(
    config: Optional[Path] = typer.Argument(None, help="edgeconv.toml, a pyproject.toml with \\[tool.edgeconv], or a folder holding one."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Conversions run at once (default: `jobs` in the config, else 1)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output root (default: `output` in the config, else ./out)."),
    model: list[str] = typer.Option([], "--model", "-m", help="Only this model (repeatable)."),
    target: list[str] = typer.Option([], "--target", "-t", help="Only this target (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Run every pair, even unchanged ones."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Pass --no-cache to every conversion (no stage reuse from earlier runs)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pairs and which would be skipped; convert nothing."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
) -> int:
    from dataclasses import replace

    from edgeconv.batch import run_batch, select_pairs
    from edgeconv.cli.batch_progress import BatchDisplay
    from edgeconv.config import find_config, load_config
    from edgeconv.errors import UsageError

    if jobs is not None and jobs < 1:
        raise UsageError(f"bad --jobs {jobs}", "use -j 1 or more")
    cfg = load_config(config if config is not None else find_config())
    if output is not None:
        cfg = replace(cfg, output=output.absolute())
    total = len(select_pairs(cfg, list(model) or None, list(target) or None))
    display = BatchDisplay(UI, total, f"batch ({cfg.path.name})")  # running pairs and their stage, the done count
    with display.live():
        summary = run_batch(cfg, jobs=jobs, force=force, only_models=list(model) or None,
                            only_targets=list(target) or None, verbose=UI.verbose, on_done=display.done,
                            dry_run=dry_run, no_cache=no_cache, on_start=display.started, on_stage=display.stage)
    if UI.json_mode:
        UI.emit_json(summary.to_json())
        return summary.exit_code
    _render(summary, dry_run)
    return summary.exit_code


def _render(summary: Any, dry_run: bool) -> None:
    from rich.markup import escape

    from edgeconv.cli.tables import Col, FitTable, human_bytes
    from edgeconv.manifest import target_shipped_bytes

    # on a narrow terminal the least important columns go first (drop order), model and target names are never cut
    table = FitTable([Col("model", no_wrap=True), Col("target", no_wrap=True), Col("result"),
                      Col("exit", "right", drop=4), Col("time s", "right", drop=6), Col("size", "right", drop=3),
                      Col("SNR dB", "right", drop=2), Col("top-1", "right", drop=5), Col("note", drop=1)],
                     title=f"edgeconv batch → {summary.output}")
    marks = {"ok": "[green]ok[/green]", "skipped": "[dim]unchanged[/dim]", "failed": "[red]failed[/red]",
             "pending": "[yellow]would run[/yellow]"}
    for r in summary.runs:
        size = human_bytes(target_shipped_bytes({"artifacts": r.artifacts}))  # the primary artifact, as convert shows it
        v = r.validation or {}
        snr = "—" if v.get("snr_db") is None else f"{v['snr_db']:.1f}"
        top1 = "—" if v.get("top1_agreement") is None else f"{v['top1_agreement']:.3f}"
        note = ""
        if v.get("task"):  # labelled --eval data: the task metric of the source and of the artifact
            from edgeconv.task_metrics import summary as task_summary

            note = task_summary(v["task"])
        if r.error:
            note = r.error.get("message", "")
            if r.log:
                note += f" (log: {r.log})"
        table.add_row(escape(r.model), escape(r.target), marks.get(r.status, r.status), str(r.exit_code), f"{r.seconds:.1f}",
                      size, snr, top1, escape(note))
    UI.out.print(table)
    counts = summary.counts
    if not dry_run:
        UI.out.print(f"{counts['ok']} converted, {counts['skipped']} unchanged, {counts['failed']} failed in "
                     f"{summary.seconds:.1f} s with -j {summary.jobs}; summary: {Path(summary.output) / 'batch-summary.json'}")
