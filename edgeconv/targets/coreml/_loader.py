"""coremltools imported quietly, for the Core ML edges (through _convert.py) and the runtime: it imports TensorFlow and
torch, warns about their versions, prints progress bars and 'Failed to load _MLModelProxy' on Linux. Importing it also
installs edgeconv's fixes to its PyTorch front end (_torch_ops.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Any, Iterator

from edgeconv.deps import require

log = logging.getLogger(__name__)


def coremltools() -> Any:
    """Import coremltools quietly (it imports TensorFlow and torch, warns about their versions, prints progress bars and
    'Failed to load _MLModelProxy' on Linux)."""
    import sys

    if "coremltools" in sys.modules:  # imported before (by a test, or another module): the fixes still apply
        from edgeconv.targets.coreml import _torch_ops

        _torch_ops.install()
        return sys.modules["coremltools"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # coremltools imports TensorFlow when it is installed
    with quiet(), _native_stderr_silenced():
        module = require("coremltools", "coreml", purpose="Core ML conversion")
    from edgeconv.targets.coreml import _torch_ops

    _torch_ops.install()  # its PyTorch front end's fixes for real models' patterns
    return module


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) go to file descriptor 2 whatever
    TF_CPP_MIN_LOG_LEVEL says; coremltools imports TensorFlow, so hide fd 2 while it does."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded / captured): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """coremltools writes tqdm progress bars and warnings to stderr/stdout: keep --json output and the terminal clean."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("coremltools", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if sink.getvalue():
            log.debug("coremltools output:\n%s", sink.getvalue()[-4000:])
