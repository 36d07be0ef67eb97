"""The standard streams, made usable before the CLI does anything (imported first by edgeconv.cli.app)."""

from __future__ import annotations

import os
import sys


def ensure_std_streams() -> None:
    """A command started with stdin, stdout or stderr closed (`edgeconv targets >&-`): point the missing descriptors at
    /dev/null, so no print fails and no file edgeconv or a toolchain opens later becomes fd 1 or 2 by accident. Text
    streams write paths that are not valid UTF-8 back as the bytes they were (surrogateescape)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(fd, "w", encoding="utf-8", errors="surrogateescape", closefd=False))  # noqa: SIM115
        elif hasattr(stream, "reconfigure") and str(getattr(stream, "encoding", "")).lower().replace("-", "") == "utf8":
            try:  # only for UTF-8 streams: elsewhere surrogateescape would fail on characters the encoding lacks
                stream.reconfigure(errors="surrogateescape")
            except (ValueError, OSError):
                pass
