"""Rich tables shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _with_companion_bytes(artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model rows, each with the bytes of the companions that follow it (a QNN context binary, external data) added:
    the size a user ships."""
    rows: list[dict[str, Any]] = []
    for art in artifacts:
        if art["role"] == "companion" and rows and rows[-1].get("bytes") is not None:
            rows[-1] = {**rows[-1], "bytes": rows[-1]["bytes"] + (art.get("bytes") or 0)}
        elif art["role"] in ("model", "not-built"):
            rows.append(dict(art))
    return rows


def manifest_table(manifest: dict[str, Any], outdir: Path) -> Table:
    table = Table(title=f"edgeconv → {outdir}", title_justify="left", caption="size includes companion files (context binaries, external data)")
    with_task = any((t.get("validation") or {}).get("task") for t in manifest["targets"])
    for col, justify in [("target", "left"), ("artifact", "left"), ("size", "right"), ("validated on", "left"),
                         ("SNR dB", "right"), ("cosine", "right"), ("top-1", "right"),
                         *([("task (source → artifact)", "left")] if with_task else []), ("result", "left")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    reused = False
    integer_outputs = False
    for target in manifest["targets"]:
        if target.get("error"):  # --keep-going: a failed target, nothing written for it
            error = target["error"]
            table.add_row(target["target"], f"[red]{escape(error['message'][:120])}[/red]", "—", "", "", "", "",
                          *([""] if with_task else []), f"[red]exit {error['code']}[/red]")
            continue
        models = _with_companion_bytes(target["artifacts"])
        validation = target.get("validation") or {}
        metrics = validation.get("metrics") or {}
        runtime = validation.get("runtime", "")
        status = "[green]ok[/green]" if validation.get("passed") else "[red]failed[/red]"
        if validation.get("kind") == "structural":
            status += " (structural)"
            reference = (validation.get("checks") or {}).get("mil_reference") or {}
            if reference.get("ran") and not metrics:  # Core ML off macOS: the numbers of the MIL reference execution
                metrics, runtime = reference.get("metrics") or {}, f"{runtime} (MIL reference)"
        for i, art in enumerate(models):
            first = i == 0
            table.add_row(
                target["target"] if first else "",
                art["path"] if art["role"] != "not-built" else f"[yellow]{art['format']}: not built[/yellow]",
                human_bytes(art.get("bytes")),
                runtime if first else "",
                _fmt(metrics.get("snr_db"), ".1f") if first else "",
                _fmt(metrics.get("cosine"), ".6f") if first else "",
                _fmt(metrics.get("top1_agreement"), ".3f") if first else "",
                *([_task_cell(validation.get("task")) if first else ""] if with_task else []),
                status if first else "",
            )
        reused = reused or bool((validation.get("samples") or {}).get("reused_calibration"))
        outputs = metrics.get("outputs") or []
        if len(outputs) > 1:  # one row per output: which one is weak, and integer outputs by exact match
            for out in outputs:
                exact = out.get("exact_match")
                table.add_row("", f"[dim]↳ {escape(str(out['name']))}[/dim]", "", "",
                              _fmt(out.get("snr_db"), ".1f") if exact is None else "—",
                              _fmt(out.get("cosine"), ".6f") if exact is None else "—",
                              _fmt(out.get("top1_agreement"), ".3f") if exact is None else f"={exact:.3f}",
                              *([""] if with_task else []), "")
                integer_outputs = integer_outputs or exact is not None
    if integer_outputs:
        table.caption = f"{table.caption}; =x.xxx: exact match of an integer / bool output"
    if reused:
        table.caption = f"{table.caption}; validated on the calibration samples (no separate --eval): optimistic"
    return table


def _task_cell(task: dict[str, Any] | None) -> str:
    """'top-1 97.8% → 97.6%', with the drop when there is one; '—' without a task metric."""
    if not task:
        return "—"
    from edgeconv.task_metrics import summary

    drop = task.get("drop") or 0.0
    unit = " pt" if task.get("percent") else ""
    tail = f" ([red]-{drop:.2g}{unit}[/red])" if drop > 0 else ""
    return escape(summary(task)) + tail
