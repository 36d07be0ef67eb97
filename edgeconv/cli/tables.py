"""Rich tables shared by commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console, ConsoleOptions
from rich.markup import escape
from rich.table import Table


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


@dataclass(frozen=True)
class Col:
    header: str
    justify: str = "left"
    drop: int = 0  # 0: always shown; on a narrow terminal the highest is dropped first
    no_wrap: bool = False  # names (targets): never wrapped, never cut


class FitTable:
    """A rich table that fits the terminal it is printed on: while its columns cannot all be as wide as their longest
    word (a target name, an artifact path, a header word), the least important columns are dropped, one at a time, and
    the caption names them. If even the essential ones do not fit, long words fold onto the next line; target names
    are never cut ("…")."""

    def __init__(self, columns: list[Col], *, title: str = "", caption: str = ""):
        self.columns = columns
        self.title = title
        self.caption = caption
        self.rows: list[tuple[Any, ...]] = []

    def add_row(self, *cells: Any) -> None:
        self.rows.append(cells)

    def build(self, dropped: frozenset[int] = frozenset()) -> Table:
        caption = self.caption
        if dropped:
            names = ", ".join(self.columns[i].header for i in sorted(dropped))
            caption = f"{caption + '; ' if caption else ''}narrow terminal: {names} not shown (--json has every value)"
        table = Table(title=self.title or None, title_justify="left", caption=caption or None)
        for i, col in enumerate(self.columns):
            if i not in dropped:
                table.add_column(col.header, justify=col.justify, no_wrap=col.no_wrap,  # type: ignore[arg-type]  # rich JustifyMethod values
                                 overflow="ellipsis" if col.no_wrap else "fold")
        for row in self.rows:
            table.add_row(*(cell for i, cell in enumerate(row) if i not in dropped))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        order = sorted((i for i, c in enumerate(self.columns) if c.drop), key=lambda i: -self.columns[i].drop)
        for n in range(len(order) + 1):
            dropped = frozenset(order[:n])
            kept = [i for i in range(len(self.columns)) if i not in dropped]
            widths = self._widths(console, options, kept)
            if widths is not None:
                break
        else:  # too narrow even so: long words (paths) fold; names stay whole
            widths = self._widths(console, options, kept, fold=True)
        table = self.build(dropped)
        for column, width in zip(table.columns, widths or []):
            column.width = width
        yield table

    def _widths(self, console: Console, options: ConsoleOptions, kept: list[int], fold: bool = False) -> list[int] | None:
        """Content widths for the kept columns that hold every word whole (None: impossible at this width). rich's own
        shrinking takes from the widest columns first, splitting a path or a name mid-word even where narrowing
        another column would have kept it whole."""
        from rich.measure import Measurement

        unbounded = options.update_width(1 << 16)
        mins, maxs = [], []
        for i in kept:
            cells = [self.columns[i].header, *(row[i] for row in self.rows)]
            sizes = [Measurement.get(console, unbounded, console.render_str(str(c))) for c in cells]
            maxs.append(max(m.maximum for m in sizes))
            if self.columns[i].no_wrap:
                mins.append(maxs[-1])
            else:
                mins.append(min(max(m.minimum for m in sizes), 6) if fold else max(m.minimum for m in sizes))
        room = options.max_width - (len(kept) + 1) - 2 * len(kept)  # borders and one space of padding each side
        if sum(mins) > room:
            return None
        widths = list(maxs)
        excess = sum(widths) - room
        while excess > 0:  # narrow the widest column that can still wrap, one cell at a time
            j = max((k for k in range(len(widths)) if widths[k] > mins[k]), key=lambda k: widths[k])
            widths[j] -= 1
            excess -= 1
        return widths


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _model_rows(artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model (and not-built) rows, each with its shipped size (manifest.shipped_size: the file plus the companions it
    needs — a QNN context binary, external data, an OpenVINO .bin)."""
    from edgeconv.manifest import target_shipped_bytes

    rows: list[dict[str, Any]] = []
    for i, art in enumerate(artifacts):
        if art["role"] == "model":
            rows.append({**art, "bytes": target_shipped_bytes({"artifacts": artifacts[i:]})})
        elif art["role"] == "not-built":
            rows.append(dict(art))
    return rows


def manifest_table(manifest: dict[str, Any], outdir: Path) -> FitTable:
    with_task = any((t.get("validation") or {}).get("task") for t in manifest["targets"])
    columns = [Col("target", no_wrap=True), Col("artifact"), Col("size", "right", drop=3, no_wrap=True), Col("validated on", drop=5),
               Col("SNR dB", "right", drop=2), Col("cosine", "right", drop=6), Col("top-1", "right", drop=4),
               *([Col("task (source → artifact)", drop=1)] if with_task else []), Col("result")]
    table = FitTable(columns, title=f"edgeconv → {outdir}",
                     caption="size: the model plus the files it loads (context binary, external data, weights .bin)")
    reused = False
    integer_outputs = near_ties = False
    for target in manifest["targets"]:
        if target.get("error"):  # --keep-going: a failed target, nothing written for it
            error = target["error"]
            table.add_row(target["target"], f"[red]{escape(error['message'][:120])}[/red]", "—", "", "", "", "",
                          *([""] if with_task else []), f"[red]exit {error['code']}[/red]")
            continue
        models = _model_rows(target["artifacts"])
        validation = target.get("validation") or {}
        metrics = validation.get("metrics") or {}
        runtime = validation.get("runtime", "")
        if validation.get("stand_in"):  # e.g. a TensorRT engine not built here: its ONNX ran on ONNX Runtime
            runtime = f"{runtime} ({validation['stand_in']})"
        share = _accelerator_share(validation.get("runtime", ""), target.get("notes") or {})
        if share:
            runtime = f"{runtime} ({share})"
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
        near_ties = near_ties or any(out.get("top1_ties") for out in outputs)
        if len(outputs) > 1:  # one row per output: which one is weak, and integer outputs by exact match
            for out in outputs:
                exact = out.get("exact_match")
                label = escape(str(out["name"]))
                if out.get("ties"):
                    label = f"{label} (top-k, {out['ties']:.0%} ties)"
                elif out.get("aligned_by"):
                    label = f"{label} (by {escape(str(out['aligned_by']))})"
                table.add_row("", f"[dim]↳ {label}[/dim]", "", "",
                              _fmt(out.get("snr_db"), ".1f") if exact is None else "—",
                              _fmt(out.get("cosine"), ".6f") if exact is None else "—",
                              _fmt(out.get("top1_agreement"), ".3f") if exact is None else f"={exact:.3f}",
                              *([""] if with_task else []), "")
                integer_outputs = integer_outputs or exact is not None
    if integer_outputs:
        table.caption = f"{table.caption}; =x.xxx: exact match of an integer / bool output (of a top-k's picks: as a set)"
    if near_ties:
        table.caption = (f"{table.caption}; top-1: the plain share; its gate counts a near tie (the source's two classes "
                         "nearer than the conversion's noise on the other scores: top1_ties in the manifest) as agreeing "
                         "where the output meets its other bounds")
    if reused:
        table.caption = f"{table.caption}; validated on the calibration samples (no separate --eval): optimistic"
    return table


def _accelerator_share(runtime: str, notes: dict[str, Any]) -> str:
    """How much of the graph the accelerator took, where the target's converter measured it ('XNNPACK 96%',
    'HTP 100%'): the validating runtime's own reading of the target's notes (Runtime.accelerator_share)."""
    from edgeconv.runtimes import all_runtimes

    found = [r for r in all_runtimes() if r.name == runtime]
    return found[0].accelerator_share(notes) if found else ""


def _task_cell(task: dict[str, Any] | None) -> str:
    """'top-1 97.8% → 97.6%', with the drop when there is one; '—' without a task metric."""
    if not task:
        return "—"
    from edgeconv.task_metrics import summary

    drop = task.get("drop") or 0.0
    unit = " pt" if task.get("percent") else ""
    tail = f" ([red]-{drop:.2g}{unit}[/red])" if drop > 0 else ""
    return escape(summary(task)) + tail
