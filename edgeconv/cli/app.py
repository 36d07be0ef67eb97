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
from pathlib import Path
from typing import Any

from edgeconv.cli._streams import ensure_std_streams

ensure_std_streams()  # before anything looks at sys.stdout (`edgeconv targets >&-` starts with it None)

import typer  # noqa: E402

from edgeconv import __version__  # noqa: E402
from edgeconv.cli.ui import UI, PipeSafe  # noqa: E402
from edgeconv.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, EdgeconvError, Interrupted, one_line  # noqa: E402

try:  # typer >= 0.17 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]  # the same module, unvendored

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
    """The one place errors are shown: message and hint become one clean line each (no colour codes a toolchain put
    in its text, no native log lines, no control characters), as text on stderr or as the --json object."""
    if _SIGNALLED and not signalled:
        return  # whatever a signal unwound into, it is reported once as the interruption (see main)
    error = {**error, "message": one_line(error.get("message") or "") or "error", "hint": one_line(error.get("hint") or "")}
    try:
        if UI.json_mode:
            UI.emit_json({"error": error})
            return
        if traceback_text:
            UI.err.print(traceback_text, markup=False, highlight=False)
        from rich.markup import escape  # messages and hints hold brackets: pip install 'edgeconv[tensorrt]'

        UI.err.print(f"[bold red]error:[/bold red] {escape(error['message'])}", markup=True, highlight=False)
        if error.get("hint"):
            UI.err.print(f"[dim]hint:[/dim] {escape(error['hint'])}", highlight=False)
    except (OSError, ValueError, EdgeconvError) as e:  # stdout (--json > /dev/full) or stderr cannot be written
        try:
            sys.stderr.write(f"error: {error['message']}\nhint: {error['hint'] or str(e) or 'see above'}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _private_tmpdir() -> str | None:
    """Toolchains leave files in $TMPDIR on every run (`import onnxruntime` writes .ses, torch its torchinductor_USER
    cache, ORT's quantizer ort.quant.* folders on a signal): each run gets a temp folder of its own, removed at exit."""
    import atexit
    import os
    import shutil
    import tempfile

    try:
        path = tempfile.mkdtemp(prefix=f"edgeconv-run-{os.getpid()}-")
    except OSError:
        return None
    _remove_stale_tmpdirs(Path(path).parent)
    _SAVED_TMP[:] = [os.environ.get("TMPDIR"), tempfile.tempdir]
    # what must not move from run to run stays in the shared temp folder: the QNN compiler writes its input's path
    # into the context binary, so its staging folder is fixed (targets/qnn/_compile.py), else no two runs match
    os.environ.setdefault(SHARED_TMP_ENV, str(Path(path).parent))
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    owner = os.getpid()  # a forked child that exits through sys.exit must not remove its parent's folder
    atexit.register(lambda: shutil.rmtree(path, True) if os.getpid() == owner else None)
    return path


def _remove_stale_tmpdirs(base: Path, min_age_s: float = 3600.0) -> None:
    """Private temp folders of runs that were SIGKILLed or crashed in native code (nothing can clean up after those):
    removed by a later run once their process is gone and they are an hour old."""
    import os
    import shutil
    import time

    from edgeconv.outputs import _pid_alive

    try:
        entries = list(base.glob("edgeconv-run-*-*"))
    except OSError:
        return
    for entry in entries:
        pid_text = entry.name[len("edgeconv-run-"):].split("-")[0]
        try:
            old = time.time() - entry.lstat().st_mtime > min_age_s
        except OSError:
            continue
        if pid_text.isdigit() and int(pid_text) != os.getpid() and old and entry.is_dir() and not entry.is_symlink() \
                and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)


_SAVED_TMP: list[Any] = []  # TMPDIR and tempfile.tempdir before the run (main() may be called in-process)
SHARED_TMP_ENV = "EDGECONV_SHARED_TMPDIR"  # the temp folder above the run's private one


def _remove_private_tmpdir(path: str) -> None:
    import os
    import shutil
    import tempfile

    shutil.rmtree(path, ignore_errors=True)
    if _SAVED_TMP:
        env, tempdir = _SAVED_TMP
        if env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env
        tempfile.tempdir = tempdir


def main(argv: list[str] | None = None) -> None:
    ensure_std_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    tmpdir = _private_tmpdir()
    import os

    # ONNX Runtime (1.2x+) keeps a telemetry device id and event store in ~/.cache/Microsoft/DeveloperTools on every
    # session unless told not to: a conversion writes nothing outside OUTDIR (and sends nothing anywhere)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
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
    code = _exit_code_after_output(code)
    if tmpdir is not None:
        _remove_private_tmpdir(tmpdir)
    _exit(code)


def _exit_code_after_output(code: int) -> int:
    """stdout that could not be written (`> /dev/full`; a closed pipe is the reader's choice, not an error): exit 6."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    except OSError:
        if isinstance(sys.stdout, PipeSafe):
            sys.stdout.flush()  # records the error and drops further output
    except ValueError:
        pass
    error = UI.stdout_error()
    if error is None or code != 0:
        return code
    from edgeconv.errors import OutputError

    failure = OutputError(f"cannot write to stdout: {error.strerror or error}", "redirect stdout to a file system with free space")
    UI.json_mode = False  # the JSON object cannot be written either: say it on stderr
    _render_error(failure.to_json())
    return failure.exit_code


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    sys.exit(code)
