"""`edgeconv doctor`: installed backends and versions, usable targets, dependency clashes (exit 4 when broken)."""

from __future__ import annotations

import typer

from edgeconv.cli.ui import UI
from edgeconv.errors import EXIT_OK, EXIT_UNSUPPORTED


def register(app: typer.Typer) -> None:
    app.command("doctor", help="Show which backends (and versions) are installed, which targets are usable here, and "
                               "protobuf/numpy clashes between backends. Exit 4 when something is broken.")(doctor)


def doctor(
    imports: bool = typer.Option(False, "--imports", help="Also import every backend in a fresh interpreter (slow; finds binary clashes)."),
    backend: list[str] = typer.Option([], "--backend", help="With --imports: check only this backend (repeatable)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> int:
    from edgeconv.doctor import diagnose

    report = diagnose(imports=imports, only=list(backend) or None)
    code = EXIT_OK if report.healthy else EXIT_UNSUPPORTED
    if UI.json_mode:
        UI.emit_json(report.to_json())
        return code
    from rich.markup import escape
    from rich.table import Table

    out = UI.out
    out.print(f"edgeconv {report.edgeconv} · Python {report.python} · {report.platform}")
    checks = {i.module: i for i in report.imports}
    table = Table(title="backends", title_justify="left")
    for col in ("package", "version", "extra", *(["import"] if checks else [])):
        table.add_column(col)
    for b in report.backends:
        version = b["version"] or "[dim]not installed[/dim]"
        row = [b["name"], version, b["extra"]]
        if checks:
            check = checks.get(b["module"])
            row.append("" if check is None else f"[green]ok[/green] {check.seconds:.1f} s" if check.ok else f"[red]{escape(check.error)}[/red]")
        table.add_row(*row)
    out.print(table)
    targets = Table(title="targets usable here", title_justify="left")
    for col in ("target", "usable", "note"):
        targets.add_column(col)
    for t in report.targets:
        marks = {"structural": "[yellow]yes (structural check)[/yellow]", "partial": "[yellow]partly[/yellow]"}
        mark = marks.get(t["validation"], "[green]yes[/green]") if t["usable"] else "[red]no[/red]"
        targets.add_row(t["name"], mark, escape(t["note"]))
    out.print(targets)
    for note in report.notes:
        out.print(f"[dim]note:[/dim] {escape(note)}")
    if report.clashes:
        out.print("[red]dependency clashes:[/red]")
        for c in report.clashes:
            out.print(f"  {escape(c.describe())}")
        out.print("[dim]hint:[/dim] " + escape("pip install -c constraints.txt 'edgeconv[all]' in a fresh virtualenv"))
    elif report.healthy:
        out.print("[green]no dependency clashes[/green]")
    return code
