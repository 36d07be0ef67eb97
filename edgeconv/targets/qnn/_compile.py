"""Reproducible QNN compiles. The QNN EP names each HTP partition after a hash of the model's *path*, and a context
binary also differs with what the process compiled before it. So the model is compiled from one fixed path
(TMPDIR/edgeconv-qnn-stage/, under a lock shared by all edgeconv processes), in a fresh Python process that compiles only
that: same graph and versions → same bytes, run after run.

Run as `python -m edgeconv.targets.qnn._compile REQUEST.json` (internal)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

STAGE = "edgeconv-qnn-stage"
LOCK = "edgeconv-qnn-stage.lock"


@contextlib.contextmanager
def staged(model: Path, name: str) -> Iterator[Path]:
    """Copy `model` to TMPDIR/edgeconv-qnn-stage/<name> (exclusive across processes); the folder is emptied after."""
    from filelock import FileLock

    # not the run's private TMPDIR (edgeconv-run-PID-*): the path is written into the context binary
    root = Path(os.environ.get("EDGECONV_SHARED_TMPDIR") or tempfile.gettempdir())
    with FileLock(root / LOCK, thread_local=False):  # blocking: flock on POSIX, LockFileEx on Windows
        folder = root / STAGE
        shutil.rmtree(folder, ignore_errors=True)  # left over by a killed run
        folder.mkdir()
        try:
            target = folder / name
            shutil.copyfile(model, target)
            yield target
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def compile_in_subprocess(model: Path, ctx_model: Path, provider_options: dict[str, str], config: dict[str, Any]) -> None:
    """Compile `model` into `ctx_model` (+ its binary beside it). Raises RuntimeError with the compiler's message."""
    with staged(model, f"{ctx_model.stem.removesuffix('_ctx')}.onnx") as staged_model:
        staged_ctx = staged_model.parent / ctx_model.name
        request = {"model": str(staged_model), "provider_options": provider_options,
                   "config": {**config, "ep.context_file_path": str(staged_ctx)}}
        (staged_model.parent / "request.json").write_text(json.dumps(request))
        proc = subprocess.run([sys.executable, "-m", "edgeconv.targets.qnn._compile", str(staged_model.parent / "request.json")],
                              capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip() and "LIBNATIVE" not in line]
            raise RuntimeError(lines[-1] if lines else f"compiler process exited with {proc.returncode}")
        ctx_model.parent.mkdir(parents=True, exist_ok=True)
        for produced in staged_model.parent.iterdir():
            if produced.name.startswith(ctx_model.stem):
                shutil.move(str(produced), ctx_model.parent / produced.name)


def _main(request_path: str) -> None:
    from edgeconv.targets.qnn._ep import qnn_session

    request = json.loads(Path(request_path).read_text())
    session = qnn_session(Path(request["model"]), request["provider_options"], request["config"])
    del session


if __name__ == "__main__":
    _main(sys.argv[1])
