"""The only way library code fails: an EdgeconvError with a message, a hint and the documented exit code.

Exit codes are a contract (docs/exit-codes.md):
0 ok · 1 internal error · 2 usage · 3 invalid input · 4 unsupported · 5 accuracy gate failed · 6 I/O ·
7 refused for safety · 130 interrupted (143 for SIGTERM).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INVALID_INPUT = 3
EXIT_UNSUPPORTED = 4
EXIT_ACCURACY = 5
EXIT_IO = 6
EXIT_SAFETY = 7
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class EdgeconvError(Exception):
    """A failure the user can act on. `details` carries structured data for --json (e.g. metrics, node lists)."""

    exit_code: int = EXIT_INTERNAL
    kind: str = "error"

    def __init__(self, message: str, hint: str = "", *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.exit_code, "kind": self.kind, "message": self.message, "hint": self.hint}
        if self.details:
            out["details"] = self.details
        return out


class UsageError(EdgeconvError):
    exit_code = EXIT_USAGE
    kind = "usage"


class InvalidInputError(EdgeconvError):
    exit_code = EXIT_INVALID_INPUT
    kind = "invalid-input"


class UnsupportedError(EdgeconvError):
    exit_code = EXIT_UNSUPPORTED
    kind = "unsupported"


class MissingBackendError(UnsupportedError):
    kind = "missing-backend"


class AccuracyGateError(EdgeconvError):
    exit_code = EXIT_ACCURACY
    kind = "accuracy-gate"


class OutputError(EdgeconvError):
    exit_code = EXIT_IO
    kind = "io"


class SafetyError(EdgeconvError):
    exit_code = EXIT_SAFETY
    kind = "safety"


class Interrupted(EdgeconvError):
    exit_code = EXIT_INTERRUPTED
    kind = "interrupted"

    def __init__(self, signal_name: str = "SIGINT", exit_code: int = EXIT_INTERRUPTED):
        super().__init__(f"interrupted by {signal_name}", "nothing was written; run the command again")
        self.exit_code = exit_code


class TargetsFailed(EdgeconvError):
    """--keep-going: some targets failed, the others were written. Exits with the worst code among the failures;
    `details["manifest"]` is the manifest written to OUTDIR (the failed targets carry their `error`)."""

    kind = "targets-failed"

    def __init__(self, failures: list[tuple[str, EdgeconvError]], total: int, outdir: str, manifest: dict[str, Any]):
        worst = max(failures, key=lambda f: f[1].exit_code)
        listed = "; ".join(f"{name} (exit {e.exit_code}: {e.message})" for name, e in failures)
        super().__init__(f"{len(failures)} of {total} targets failed: {listed}",
                         f"the {total - len(failures)} that passed are in {outdir} (manifest.json lists the failures); "
                         f"{worst[1].hint or 'see each failure'}", details={"manifest": manifest})
        self.exit_code = worst[1].exit_code
        self.failures = failures


@dataclass(frozen=True)
class ExitCodeDoc:
    code: int
    name: str
    meaning: str
    examples: tuple[str, ...] = field(default_factory=tuple)


EXIT_CODES: tuple[ExitCodeDoc, ...] = (
    ExitCodeDoc(EXIT_OK, "ok", "conversion done and validated"),
    ExitCodeDoc(EXIT_INTERNAL, "internal", "a bug in edgeconv: the traceback is shown; please report it"),
    ExitCodeDoc(EXIT_USAGE, "usage", "bad flag, unknown target (closest names suggested), bad profile file, output exists"),
    ExitCodeDoc(EXIT_INVALID_INPUT, "invalid-input", "unreadable model, bad calibration data, dynamic shapes on an NPU"),
    ExitCodeDoc(EXIT_UNSUPPORTED, "unsupported", "op or route not possible for the target, missing optional backend"),
    ExitCodeDoc(EXIT_ACCURACY, "accuracy-gate", "the converted model failed its accuracy gate"),
    ExitCodeDoc(EXIT_IO, "io", "output not writable, disk full"),
    ExitCodeDoc(EXIT_SAFETY, "safety", "untrusted pickle, path escaping its folder, output symlink pointing elsewhere"),
    ExitCodeDoc(EXIT_INTERRUPTED, "interrupted", "SIGINT (Ctrl-C); 143 for SIGTERM; nothing left on disk"),
)


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Lines native libraries print in the middle of a message: glog / absl (`E1201 12:34:56.789012  123 file.cc:42] ...`),
# ONNX Runtime (`2026-12-01 12:34:56.789 [E:onnxruntime:...]`), TensorFlow's `2026-12-01 12:34:56.789: E tensorflow/...`.
_NATIVE_LOG = re.compile(r"^\s*(?:[IWEF]\d{4} \d\d:\d\d:\d\d(?:\.\d+)?\s+\d+\s+\S+:\d+\]"
                         r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?:?\s+(?:\[[EWIVF][:\]]|[EWIVF]\s+\S+/\S+:\d+\]))")


def clean_lines(text: str) -> list[str]:
    """A message's lines without terminal colour codes, control characters and native libraries' log lines."""
    text = _ANSI.sub("", str(text)).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_CONTROL.sub("", line).strip() for line in text.split("\n"))
    return [line for line in lines if line and not _NATIVE_LOG.match(line)]


def one_line(text: str, limit: int = 2000) -> str:
    """`text` as one clean line (its lines joined with '; '), for the error boundary."""
    joined = "; ".join(clean_lines(text))
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text (toolchains raise multi-page messages), for one-line errors; colour codes
    and native log lines (`E1201 12:34:56 ...`) are not part of it."""
    text = clean_lines(str(e))
    return text[0][:limit] if text else type(e).__name__


class StepSkipped(Exception):
    """Raised by a converter that cannot run on this machine by design (e.g. a TensorRT engine without a GPU) when the
    profile allows the rest of the run to stand: the pipeline records the artifact as "not built" with `reason`."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
