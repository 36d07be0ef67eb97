"""`edgeconv inspect MODEL`: format, inputs/outputs, op histogram, weights, dynamic dims, and which targets can take it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeconv.cli.ui import UI

if TYPE_CHECKING:
    from edgeconv.formats import TensorSpec
    from edgeconv.inspect import ModelReport


def register(app: typer.Typer) -> None:
    app.command("inspect", help="Show what is inside MODEL (format, I/O, ops, weights by dtype, dynamic dims) and which "
                                "targets can take it, and why not.")(inspect)


def inspect(
    model: Path = typer.Argument(..., help="Model file or SavedModel dir (format detected by content)."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix an input's dims: NAME=1x3x224x224 (repeatable)."),
    target: list[str] = typer.Option([], "--target", "-t", help="Check only these targets (default: every built-in one)."),
    no_targets: bool = typer.Option(False, "--no-targets", help="Skip the target check (faster for framework sources)."),
    top: int = typer.Option(20, "--top", help="Op types shown in the histogram table (JSON has them all)."),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help="Load a model even if loading it runs code from the file (pickled modules, Keras Lambda layers, .pt2 pickled payloads, SavedModel file ops)."),
    custom_objects: list[str] = typer.Option([], "--custom-objects", help="Keras sources: import this module first (package.module, repeatable), so the classes it registers with keras.saving.register_keras_serializable load (a subclassed model, custom layers)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    from edgeconv.context import parse_input_shapes
    from edgeconv.inspect import inspect_model

    report = inspect_model(model, input_shapes=parse_input_shapes(input_shape), targets=list(target) or None,
                           fits=not no_targets, trust_code=trust_code,
                           custom_objects=tuple(custom_objects))
    if UI.json_mode:
        UI.emit_json(report.to_json())
        return
    _render(report, top)


def _render(report: ModelReport, top: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgeconv.cli.tables import human_bytes
    from edgeconv.inspect import group_fits

    out = UI.out
    variant = f" ({report.variant})" if report.variant else ""
    out.print(f"[bold]{report.path}[/bold]: {report.format}{variant}, {human_bytes(report.bytes)}")
    if report.producer or report.opsets:
        opsets = ", ".join(f"{k} {v}" for k, v in report.opsets.items())
        out.print(f"  producer: {report.producer or '—'}; opsets: {opsets or '—'}")
    io = Table(title="inputs / outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "dynamic dims"):
        io.add_column(col)
    for kind, specs in (("in", report.inputs), ("out", report.outputs)):
        for spec in specs:
            io.add_row(kind, escape(spec.name), spec.shape_str() if spec.shape or not spec.rank_known else "scalar",
                       spec.dtype, escape(_dynamic(spec)))
    out.print(io)
    if report.params is not None:
        weights = ", ".join(f"{k} {human_bytes(v)}" for k, v in report.bytes_by_dtype.items()) or "none"
        quant = " (quantized)" if report.quantized else ""
        out.print(f"nodes: {report.nodes}  params: {report.params:,}  weights: {weights}{quant}")
    if report.ops:
        ops = Table(title="ops", title_justify="left")
        ops.add_column("op")
        ops.add_column("count", justify="right")
        items = list(report.ops.items())
        for op, n in items[:top]:
            ops.add_row(op, str(n))
        if len(items) > top:
            ops.add_row(f"… {len(items) - top} more", str(sum(n for _, n in items[top:])))
        out.print(ops)
    for note in report.notes:
        out.print(f"[dim]note:[/dim] {escape(note)}")
    if report.profiles:
        fits = Table(title="targets", title_justify="left")
        for col in ("target", "can take it", "why not / notes"):
            fits.add_column(col)
        marks = {"yes": "[green]yes[/green]", "needs-input-shape": "[yellow]with --input-shape[/yellow]",
                 "not-installed": "[yellow]not installed[/yellow]", "no": "[red]no[/red]"}
        for group in group_fits(report.profiles):  # one reason shared by six Core ML profiles is said once
            fits.add_row(escape(group.label), marks.get(group.status, group.status), escape("; ".join(group.reasons)))
        out.print(fits)


def _dynamic(spec: TensorSpec) -> str:
    """`N (axis 0)`, `? (axis 0)` where the model names no dim; `—` for a static tensor, never a bare axis number."""
    from edgeconv.inspect import dynamic_axes

    if not spec.rank_known:
        return "rank unknown"
    return ", ".join(f"{d['name'] or '?'} (axis {d['axis']})" for d in dynamic_axes(spec)) or "—"
