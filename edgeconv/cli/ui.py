"""Rendering for the CLI: rich tables and progress bars for people, one JSON object for machines.

With --json, file descriptor 1 is pointed at stderr for the whole run (toolchains print to stdout, even from C code)
and the JSON object is written to the real stdout at the end, so stdout holds exactly one JSON object.
Progress bars go to stderr, and only when it is a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

from rich.console import Console


class PipeSafe:
    """A stream whose reader may go away (`edgeconv targets | head -1`): once the pipe is closed, output is dropped
    quietly (the fd is pointed at /dev/null) instead of BrokenPipeError surfacing from whichever print comes next."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False
        self.error: OSError | None = None  # a write that failed for another reason than a closed pipe (disk full)

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
            except OSError as e:  # stdout on a full disk (`> /dev/full`): the command fails with exit 6 (see app.main)
                self.error = self.error or e
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()
            except OSError as e:
                self.error = self.error or e
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stdout_console() -> Console:
    """Tables keep their columns in logs and pipes: rich's 80-column default for non-terminals truncates them."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(soft_wrap=True, width=200 if wide else None)


@dataclass
class Ui:
    json_mode: bool = False
    verbose: int = 0
    _json_stream: TextIO | PipeSafe | None = None
    out: Console = field(default_factory=lambda: _stdout_console())
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    def protect_stdout(self) -> None:
        """Keep stdout for the JSON object alone: everything else printed to fd 1 goes to stderr."""
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        self._json_stream = PipeSafe(os.fdopen(saved, "w", encoding="utf-8", errors="surrogateescape", closefd=True))
        sys.stdout = sys.stderr

    def quiet_native_output(self) -> None:
        """Toolchains write banners straight to file descriptor 2 from C/C++ (TensorFlow's absl lines, LiteRT's XNNPACK
        note, QNN's LIBNATIVE line, TFLiteConverter's quantizer summary). Below -vv they go to /dev/null; edgeconv's own
        messages, Python warnings and logging keep the real stderr through a duplicate of it. With --json, fd 1 (already
        diverted from stdout) is silenced too."""
        sys.stderr.flush()
        real_stderr = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="surrogateescape", buffering=1, closefd=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        if self.json_mode:
            os.dup2(devnull, 1)
            sys.stdout = real_stderr
        os.close(devnull)
        sys.stderr = real_stderr

    def guard_stdout(self) -> None:
        """Without --json: a reader that stops early (`| head`) ends output quietly, not with a traceback."""
        if not isinstance(sys.stdout, PipeSafe):
            sys.stdout = PipeSafe(sys.stdout)

    def emit_json(self, obj: Any) -> None:
        stream = self._json_stream or sys.stdout
        stream.write(json.dumps(obj, indent=2, default=str) + "\n")
        stream.flush()
        error = getattr(stream, "error", None)
        if error is not None:
            from edgeconv.errors import OutputError

            raise OutputError(f"cannot write the JSON output to stdout: {error.strerror or error}",
                              "redirect stdout to a file system with free space")

    def stdout_error(self) -> OSError | None:
        """The error that made stdout drop output (not a closed pipe: that is the reader's choice), if any."""
        for stream in (self._json_stream, sys.stdout):
            error = getattr(stream, "error", None)
            if error is not None:
                return error
        return None

    @property
    def interactive(self) -> bool:
        return not self.json_mode and self.err.is_terminal

    def reporter(self) -> "RichReporter":
        return RichReporter(self)


UI = Ui()


class _Task:
    def __init__(self, progress: Any, task_id: Any):
        self.progress = progress
        self.task_id = task_id

    def advance(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id, n)


class RichReporter:
    """Progress bars (stderr, terminals only) and stage lines (-v)."""

    def __init__(self, ui: Ui):
        self.ui = ui

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_Task]:
        if not self.ui.interactive:
            yield _Task(None, None)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.ui.err, transient=True) as progress:
            yield _Task(progress, progress.add_task(description, total=total))

    def stage(self, name: str, detail: str = "") -> None:
        """One line per stage on a terminal (or with -v), so a long conversion shows where it is; under `edgeconv batch`
        (EVENTS_ENV set) also one event line on stderr, --json or not, from which the batch shows the pair's stage."""
        from edgeconv.progress import EVENTS_ENV, event_line

        if os.environ.get(EVENTS_ENV):
            sys.stderr.write(event_line(name, detail))
            sys.stderr.flush()
        if (self.ui.verbose or self.ui.interactive) and not self.ui.json_mode:
            self.ui.err.print(f"[dim]{name:<9}[/dim] {detail}")

    def warn(self, message: str) -> None:
        if not self.ui.json_mode:
            from rich.markup import escape

            self.ui.err.print(f"[yellow]warning:[/yellow] {escape(message)}")  # "[quantize.options]" is text, not markup
