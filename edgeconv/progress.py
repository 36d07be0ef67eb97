"""Progress reporting without printing: library code calls a Reporter; the CLI supplies one that draws rich bars."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Protocol

log = logging.getLogger("edgeconv")


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None = None) -> "contextmanager[Task]": ...

    def stage(self, name: str, detail: str = "") -> None: ...

    def warn(self, message: str) -> None: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass


class NullReporter:
    """Default: logs stages and warnings through `logging`, draws nothing."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        log.debug("start %s (%s items)", description, total)
        yield _NullTask()

    def stage(self, name: str, detail: str = "") -> None:
        log.info("%s %s", name, detail)

    def warn(self, message: str) -> None:
        log.warning(message)
