"""What `edgeconv batch` shows while it runs: the completed count, and each running pair with its current stage.

On a terminal (stderr): a live block, one line for the batch (`3/8 done, 2 running`) and one per running pair
(`digits → tflite-int8   quantize  tflite-int8: quantize int8`), plus a line that stays for each finished pair
(`[3/8] ok digits → tflite-int8 (4.1 s)`). Not a terminal: those lines only with -v, plain, on stderr. With --json:
nothing. Every event is also kept in `events`, in the order it happened.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator


class BatchDisplay:
    def __init__(self, ui: Any, total: int, title: str):
        self.ui = ui
        self.total = total
        self.title = title
        self.completed = 0
        self.events: list[tuple[str, str, str, str]] = []  # (kind, model, target, stage or status): start / stage / done
        self.stages: dict[tuple[str, str], str] = {}  # running pairs → their current stage
        self._lock = threading.Lock()
        self._progress: Any = None
        self._overall: Any = None
        self._rows: dict[tuple[str, str], Any] = {}

    @property
    def _lines(self) -> bool:
        """Plain lines (no live block): not a terminal, with -v, and never with --json."""
        return not self.ui.json_mode and not self.ui.interactive and bool(self.ui.verbose)

    @contextmanager
    def live(self) -> Iterator["BatchDisplay"]:
        if not self.ui.interactive:
            yield self
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=self.ui.err, transient=True) as progress:
            self._progress = progress
            self._overall = progress.add_task(self.title, total=self.total, info=self._count())
            try:
                yield self
            finally:
                self._progress = None

    def _count(self) -> str:
        return f"{self.completed}/{self.total} done, {len(self.stages)} running"

    def started(self, model: str, target: str) -> None:
        from rich.markup import escape

        with self._lock:
            self.events.append(("start", model, target, ""))
            self.stages[(model, target)] = "starting"
            if self._progress is not None:
                self._rows[(model, target)] = self._progress.add_task(f"  {escape(model)} → {escape(target)}",
                                                                      total=None, info="[dim]starting[/dim]")
                self._progress.update(self._overall, info=self._count(), refresh=True)
        if self._lines:
            self.ui.err.print(f"[dim]start[/dim]     {escape(model)} → {escape(target)}")

    def stage(self, model: str, target: str, stage: str, detail: str = "") -> None:
        from rich.markup import escape

        for prefix in (f"{target}: ", f"{target} "):  # "onnx-fp16: quantize fp16" beside "a → onnx-fp16"
            detail = detail.removeprefix(prefix)

        with self._lock:
            self.events.append(("stage", model, target, stage))
            self.stages[(model, target)] = stage
            row = self._rows.get((model, target))
            if self._progress is not None and row is not None:  # drawn now: a stage of 50 ms still shows
                self._progress.update(row, info=f"[bold]{escape(stage)}[/bold]  [dim]{escape(detail)}[/dim]", refresh=True)
        if self._lines:
            self.ui.err.print(f"[dim]{escape(stage):<9}[/dim] {escape(model)} → {escape(target)}: {escape(detail)}")

    def done(self, result: Any) -> None:
        with self._lock:
            self.events.append(("done", result.model, result.target, result.status))
            self.completed += 1
            self.stages.pop((result.model, result.target), None)
            row = self._rows.pop((result.model, result.target), None)
            status = "unchanged" if result.status == "skipped" else result.status  # the summary table's word for it
            line = f"[{self.completed}/{self.total}] {status} {result.model} → {result.target} ({result.seconds:.1f} s)"
            if self._progress is not None:
                if row is not None:
                    self._progress.remove_task(row)
                self._progress.update(self._overall, completed=self.completed, info=self._count(), refresh=True)
                self._progress.console.print(line, markup=False, highlight=False)
        if self._lines:
            self.ui.err.print(line, markup=False, highlight=False)
