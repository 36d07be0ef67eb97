"""`edgeconv targets`: every profile, what it produces, how it is validated, and whether it works here."""

from __future__ import annotations

import typer

from edgeconv.cli.ui import UI


def register(app: typer.Typer) -> None:
    app.command("targets", help="List target profiles: what each produces, its precision, its validation runtime, and whether it is usable here.")(targets)


def targets(json_output: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    from edgeconv.availability import availability
    from edgeconv.targets import builtin_profiles

    rows = []
    for profile in builtin_profiles():
        avail = availability(profile)
        rows.append({
            "name": profile.name, "family": profile.family, "produces": [f.value for f in profile.produces],
            "precision": profile.quantize.precision, "runtime": profile.validate.runtime,
            "available": avail.usable, "validation": avail.validation, "note": avail.reason,
            "description": profile.description,
        })
    if UI.json_mode:
        UI.emit_json({"targets": rows})
        return
    from rich.table import Table

    table = Table(title="edgeconv targets", title_justify="left")
    for col in ("target", "produces", "precision", "validated on", "available here", "note"):
        table.add_column(col)
    for r in rows:
        mark = "[green]yes[/green]" if r["available"] else "[red]no[/red]"
        if r["available"] and r["validation"] == "structural":
            mark = "[yellow]yes (structural check)[/yellow]"
        table.add_row(r["name"], ", ".join(r["produces"]), r["precision"], r["runtime"], mark, r["note"])
    UI.out.print(table)
