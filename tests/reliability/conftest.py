"""Helpers for the reliability table (docs/exit-codes.md): every failure is checked the same way.

`expect_failure` runs the real CLI in a subprocess twice (text, then --json) and checks: the exit code; exactly one
`error:` line followed by a `hint:` line (one-line message, non-empty hint); with --json, stdout is exactly one JSON
object whose `error` has the code, a one-line message and a hint; no traceback anywhere; the workspace holding OUTDIR
is byte-for-byte unchanged; no staging/backup folder (`.NAME.edgeconv-*`) left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.conftest import REPO, CliResult, run_cli

INT8_PROFILE = """\
# A user profile file: int8 QDQ on ONNX Runtime, with a gate the digits CNN passes.
name = "int8-test"
extends = "onnx"
description = "int8 QDQ ONNX (reliability tests)"

[quantize]
precision = "int8"
stage = "onnx"
calibration_samples = {samples}

[validate]
samples = 8
gate = {{ min_snr_db = 5.0, min_cosine = 0.9, min_top1_agreement = 0.5 }}
"""

NPU_PROFILE = """\
name = "npu-test"
extends = "onnx"
description = "a target that needs static shapes, like every NPU"

[shapes]
static = true
"""


def tree(root: Path) -> dict[str, str]:
    """Every path under root → its content hash (files), 'dir', or 'link→target'."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = f"link→{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[str]:
    """Staging / backup folders and lock files edgeconv may create beside an OUTDIR."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".edgeconv-" in p.name or p.name.endswith(".edgeconv.lock"))


def no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text[-3000:]


def check_error_text(stderr: str, needles: tuple[str, ...]) -> str:
    lines = stderr.splitlines()
    idx = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(idx) == 1, f"expected exactly one error line:\n{stderr[-3000:]}"
    i = idx[0]
    assert i + 1 < len(lines) and lines[i + 1].startswith("hint:") and lines[i + 1][5:].strip(), \
        f"the error must be one line followed by a hint:\n{stderr[-3000:]}"
    text = f"{lines[i]}\n{lines[i + 1]}"
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    return text


def check_error_json(stdout: str, code: int, needles: tuple[str, ...]) -> dict[str, Any]:
    obj = json.loads(stdout)  # exactly one JSON object: json.loads refuses trailing data
    assert set(obj) == {"error"}, obj
    error = obj["error"]
    assert error["code"] == code and error["kind"] and error["hint"], error
    assert "\n" not in error["message"], error["message"]
    text = f"{error['message']}\n{error['hint']}"
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    return error


@dataclass
class Failure:
    text: CliResult
    json: CliResult
    error: dict[str, Any]  # the --json error object


def expect_failure(args: list[Any], code: int, *needles: str, workspace: Path, json_too: bool = True,
                   runner: Callable[..., CliResult] = run_cli, **kwargs: Any) -> Failure:
    """Run `edgeconv ARGS` (and `ARGS --json`); check the failure contract; return both results."""
    before = tree(workspace)
    text = runner(*args, **kwargs)
    no_traceback(text.stderr + text.stdout)
    assert text.code == code, f"exit {text.code}, expected {code}:\n{text.stderr[-3000:]}"
    check_error_text(text.stderr, needles)
    assert tree(workspace) == before, "the workspace changed"
    assert not leftovers(workspace)
    error: dict[str, Any] = {}
    result_json = text
    if json_too:
        result_json = runner(*args, "--json", **kwargs)
        no_traceback(result_json.stderr + result_json.stdout)
        assert result_json.code == code, f"--json: exit {result_json.code}, expected {code}:\n{result_json.stderr[-3000:]}"
        error = check_error_json(result_json.stdout, code, needles)
        assert tree(workspace) == before, "the workspace changed (--json run)"
        assert not leftovers(workspace)
    return Failure(text, result_json, error)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """The folder that holds OUTDIR (`ws/out`): checked unchanged after every failure."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Where a test writes its broken models and data."""
    path = tmp_path / "in"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("profiles")
    (folder / "int8-test.toml").write_text(INT8_PROFILE.format(samples=16))
    (folder / "npu-test.toml").write_text(NPU_PROFILE)
    return folder


def save_samples(folder: Path, arrays: list[np.ndarray] | np.ndarray, suffix: str = "npy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.{suffix}", a)
    return folder


def popen_cli(*args: Any, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """The CLI as a background process with default SIGINT handling (a shell running tests in the background may
    have set SIGINT to 'ignore', which the child would inherit)."""
    import signal

    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edgeconv", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)
