"""Rich tables shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def manifest_table(manifest: dict[str, Any], outdir: Path) -> Table:
    table = Table(title=f"edgeconv → {outdir}", title_justify="left")
    for col, justify in [("target", "left"), ("artifact", "left"), ("size", "right"), ("validated on", "left"),
                         ("SNR dB", "right"), ("cosine", "right"), ("top-1", "right"), ("result", "left")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for target in manifest["targets"]:
        models = [a for a in target["artifacts"] if a["role"] in ("model", "not-built")]
        validation = target.get("validation") or {}
        metrics = validation.get("metrics") or {}
        status = "[green]ok[/green]" if validation.get("passed") else "[red]failed[/red]"
        if validation.get("kind") == "structural":
            status += " (structural)"
        for i, art in enumerate(models):
            first = i == 0
            table.add_row(
                target["target"] if first else "",
                art["path"] if art["role"] != "not-built" else f"[yellow]{art['format']}: not built[/yellow]",
                human_bytes(art.get("bytes")),
                validation.get("runtime", "") if first else "",
                _fmt(metrics.get("snr_db"), ".1f") if first else "",
                _fmt(metrics.get("cosine"), ".6f") if first else "",
                _fmt(metrics.get("top1_agreement"), ".3f") if first else "",
                status if first else "",
            )
    return table
