"""Progress reporting without printing: library code calls a Reporter; the CLI supplies one that draws rich bars."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, contextmanager
from typing import Iterator, Protocol

log = logging.getLogger("edgeconv")


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]: ...

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


# --- stage events between processes ---------------------------------------------------------------------------------
# `edgeconv batch` runs each pair as its own `edgeconv convert --json` process. With EVENTS_ENV set, that process's
# reporter also writes one line per stage to its stderr (EVENT_PREFIX + JSON), which the batch reads to show which pair
# is in which stage; every other stderr line goes to the pair's log as before.

EVENTS_ENV = "EDGECONV_PROGRESS_EVENTS"
EVENT_PREFIX = "edgeconv-progress: "


def event_line(stage: str, detail: str = "") -> str:
    import json

    return EVENT_PREFIX + json.dumps({"stage": stage, "detail": detail}) + "\n"


def parse_event(line: str) -> dict[str, str] | None:
    """The stage event a line carries ({"stage": "quantize", "detail": "..."}), or None for any other line."""
    import json

    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX):])
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("stage"), str):
        return None
    return {"stage": event["stage"], "detail": str(event.get("detail", ""))}
