"""The `edgeconv` command and its single error boundary.

Commands live in one module each in this package and register themselves with `register(app)` (discovered
automatically). Nothing heavy is imported here: `edgeconv --help` stays fast.

Exit codes (docs/exit-codes.md): EdgeconvError → its code; bad flags → 2; Ctrl-C → 130; SIGTERM → 143; anything else is
a bug → 1 with the traceback.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import signal
import sys
import traceback
from typing import Any

import typer

from edgeconv import __version__
from edgeconv.cli.ui import UI
from edgeconv.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, EdgeconvError, Interrupted

try:  # typer >= 0.17 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    name="edgeconv",
    help="Convert and quantize trained models for edge chips, and prove the result still computes the same thing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        UI.out.print(f"edgeconv {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Log stages (-v) and toolchain details (-vv)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    UI.verbose = verbose
    if verbose < 2:
        UI.quiet_native_output()
    configure_logging(verbose)


def configure_logging(verbose: int) -> None:
    """edgeconv's own messages at -v; the toolchains' warnings (they are many) only at -vv."""
    import warnings

    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("edgeconv").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    if verbose < 2:
        warnings.filterwarnings("ignore")
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ logs (read when TF is first imported)


def _register_commands() -> None:
    import edgeconv.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in ("app", "ui") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"edgeconv.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


_SIGNALLED: list[str] = []  # the first SIGINT/SIGTERM received, if any


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: remember which, and unwind as KeyboardInterrupt. It is a BaseException, so no toolchain
    wrapper's `except Exception` can turn it into another error; staging folders and locks are removed on the way out
    (OutputTransaction.__exit__), and main() reports 130 / 143 whatever surfaced."""
    if not _SIGNALLED:
        _SIGNALLED.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # respect a shell that ignores Ctrl-C for this job
        signal.signal(signal.SIGINT, _on_signal)


def _render_error(error: dict[str, Any], traceback_text: str = "", *, signalled: bool = False) -> None:
    if _SIGNALLED and not signalled:
        return  # whatever a signal unwound into, it is reported once as the interruption (see main)
    if UI.json_mode:
        UI.emit_json({"error": error})
        return
    if traceback_text:
        UI.err.print(traceback_text, markup=False, highlight=False)
    from rich.markup import escape  # messages and hints hold brackets: pip install 'edgeconv[tensorrt]'

    UI.err.print(f"[bold red]error:[/bold red] {escape(error['message'])}", markup=True, highlight=False)
    if error.get("hint"):
        UI.err.print(f"[dim]hint:[/dim] {escape(error['hint'])}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    UI.json_mode = "--json" in args
    if UI.json_mode:
        UI.protect_stdout()
    else:
        UI.guard_stdout()
    _install_signal_handlers()
    code = 0
    try:
        command = typer.main.get_command(app)
        result = command.main(args=args, prog_name="edgeconv", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except EdgeconvError as e:
        _render_error(e.to_json())
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except click_exceptions.NoArgsIsHelpError as e:  # bare `edgeconv` / `edgeconv targets show`: the help, exit 0
        e.show()
        code = 0
    except click_exceptions.UsageError as e:  # bad flag, missing argument, no such command
        hint = f"run `{e.ctx.command_path} --help`" if e.ctx else "run `edgeconv --help`"
        _render_error({"code": EXIT_USAGE, "kind": "usage", "message": e.format_message(), "hint": hint})
        code = EXIT_USAGE
    except (KeyboardInterrupt, typer.Abort):
        _render_error({"code": EXIT_INTERRUPTED, "kind": "interrupted", "message": "interrupted", "hint": "nothing was written"})
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = 0
    except Exception as e:  # a bug: show everything
        _render_error({"code": EXIT_INTERNAL, "kind": "internal", "message": f"internal error: {type(e).__name__}: {e}",
                       "hint": "this is a bug in edgeconv; please report it with the traceback above"},
                      traceback.format_exc())
        code = EXIT_INTERNAL
    if _SIGNALLED:  # typer returns 130 for KeyboardInterrupt; wrappers may have re-raised it as something else
        interrupted = Interrupted(_SIGNALLED[0], EXIT_TERMINATED if _SIGNALLED[0] == "SIGTERM" else EXIT_INTERRUPTED)
        _render_error(interrupted.to_json(), signalled=True)
        code = interrupted.exit_code
    _exit(code)


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(code)
