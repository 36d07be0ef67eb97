"""`edgeconv targets`: every profile, what it produces, how it is validated, and whether it works here.
`edgeconv targets show NAME` (or `edgeconv targets NAME`): one profile in full, as the converter will use it."""

from __future__ import annotations

from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI
from edgeconv.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("targets", help="List target profiles: what each produces, its precision, its validation runtime, and "
                                "whether it is usable here. `targets show NAME` prints one profile in full.")(targets)


def targets(
    args: Optional[list[str]] = typer.Argument(None, metavar="[show] NAME",
                                               help="`show NAME` (or just NAME, or ./profile.toml): one profile in full."),
    json_output: bool = typer.Option(False, "--json", help="Print the list (or the profile) as JSON."),
) -> None:
    words = list(args or [])
    if words and words[0] == "show":
        words = words[1:]
        if not words:
            raise UsageError("`targets show` needs a target name", "e.g. edgeconv targets show onnx-fp16")
    if len(words) > 1:
        raise UsageError(f"one target at a time (got {', '.join(words)})", "e.g. edgeconv targets show onnx-fp16")
    if words:
        show(words[0])
    else:
        list_all()


def list_all() -> None:
    from edgeconv.availability import availability
    from edgeconv.targets import builtin_profiles

    rows: list[dict[str, Any]] = []
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
    from rich.markup import escape

    from edgeconv.cli.tables import Col, FitTable

    # a narrow terminal drops "validated on", then "produces", then "precision"; target names are never cut
    table = FitTable([Col("target", no_wrap=True), Col("produces", drop=2), Col("precision", drop=1),
                      Col("validated on", drop=3), Col("available here"), Col("note")],
                     title="edgeconv targets")
    for r in rows:
        mark = "[green]yes[/green]" if r["available"] else "[red]no[/red]"
        if r["available"] and r["validation"] == "structural":
            mark = "[yellow]yes (structural check)[/yellow]"
        if r["available"] and r["validation"] == "partial":
            mark = "[yellow]partly[/yellow]"
        table.add_row(r["name"], ", ".join(r["produces"]), r["precision"], r["runtime"], mark, escape(r["note"]))
    UI.out.print(table)


def profile_json(name: str) -> dict[str, Any]:
    from edgeconv.availability import availability
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import _profile_to_dict

    profile = resolve(name)
    avail = availability(profile)
    data: dict[str, Any] = {"name": profile.name, "family": profile.family, "description": profile.description,
                            "file": profile.source_file, **_profile_to_dict(profile)}
    data["available"] = {"usable": avail.usable, "validation": avail.validation, "note": avail.reason}
    data["doc"] = f"docs/targets/{profile.family}.md"
    return data


def show(name: str) -> None:
    data = profile_json(name)
    if UI.json_mode:
        UI.emit_json({"target": data})
        return
    from rich.table import Table

    out = UI.out
    avail = data["available"]
    from rich.markup import escape

    note = escape(avail["note"])
    state = "[green]usable here[/green]" if avail["usable"] else f"[red]not usable here[/red]: {note}"
    if avail["usable"] and avail["validation"] == "structural":
        state = f"[yellow]usable here, structural validation only[/yellow]: {note}"
    elif avail["usable"] and avail["validation"] == "partial":
        state = f"[yellow]partly usable here[/yellow]: {note}"
    out.print(f"[bold]{escape(data['name'])}[/bold] ({data['family']}) — {escape(data['description'])}")
    out.print(f"  {state}")
    out.print(f"  defined in {data['file']}; docs: {data['doc']}")
    table = Table(show_header=True, title_justify="left")
    table.add_column("key")
    table.add_column("value")
    for key, value in _flatten({k: v for k, v in data.items()
                                if k not in ("name", "family", "description", "file", "available", "doc")}):
        table.add_row(key, escape(value))
    out.print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("defaults",):
            rows += _flatten(value, dotted + ".")
        elif isinstance(value, dict):
            rows.append((dotted, ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "—"))
        else:
            rows.append((dotted, _fmt(value)))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "—"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
