"""docs/cli.md is generated from the Typer app (`make docs`); it must match the commands as they are now."""

from __future__ import annotations

from pathlib import Path

from edgeconv.cli.docgen import generate

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == generate(), \
        "docs/cli.md is stale: regenerate it with `.venv/bin/python -m edgeconv.cli.docgen > docs/cli.md`"


def test_cli_reference_covers_every_command() -> None:
    import typer.main

    from edgeconv.cli.app import app

    text = generate()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"## `edgeconv {name}`" in text
    assert "### Config file" in text and "--jobs" in text


def test_exit_code_table_is_current() -> None:
    from edgeconv.cli.docgen import EXIT_BEGIN, EXIT_END, exit_codes_table

    text = (DOC.parent / "exit-codes.md").read_text(encoding="utf-8")
    start, end = text.index(EXIT_BEGIN), text.index(EXIT_END) + len(EXIT_END)
    assert text[start:end] + "\n" == exit_codes_table(), \
        "docs/exit-codes.md's table is stale: run `make docs` (or `python -m edgeconv.cli.docgen --update-exit-codes docs/exit-codes.md`)"


def test_help_texts_escape_rich_markup() -> None:
    """Help is rendered with rich markup: an unescaped `[tool.edgeconv]` or `edgeconv[tflite]` silently disappears
    from `--help`. Write `\\[` in help strings (docgen shows them plain)."""
    import re

    import typer.main

    from edgeconv.cli.app import app

    markup = re.compile(r"(?<!\\)\[([a-z#/@][^\[]*?)\]")
    found = []

    def walk(command, path: str) -> None:  # type: ignore[no-untyped-def]
        for name, text in [("help", command.help or "")] + [(p.name, getattr(p, "help", "") or "") for p in command.params]:
            found.extend(f"{path} {name}: {m.group(0)}" for m in markup.finditer(text))
        for sub_name, sub in (getattr(command, "commands", {}) or {}).items():
            walk(sub, f"{path} {sub_name}")

    walk(typer.main.get_command(app), "edgeconv")
    assert found == []


def test_reference_shows_user_text_not_developer_docstrings() -> None:
    from edgeconv.cli.docgen import generate

    text = generate()
    for internal in ("Nothing here prints", "artifact_context", "imports=True", "reads it when it is there"):
        assert internal not in text, internal
