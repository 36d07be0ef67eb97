"""Helpers for the reliability table (docs/exit-codes.md): every failure is checked the same way.

`expect_failure` runs the real CLI in a subprocess twice (text with the stage cache on, then --json with it off; twice
as text when --json is not wanted) and checks: the exit code; exactly one `error:` line followed by a `hint:` line
(one-line message, non-empty hint, no colour codes or native log lines); with --json, stdout is exactly one JSON object
whose `error` has the code, a one-line message and a hint; no traceback anywhere; the whole sandbox (the test's
tmp_path: HOME, TMPDIR and the working directory point into it, and it holds the inputs and the folder of OUTDIR)
byte-for-byte unchanged but for the stage cache's own folder (`cache/`, documented: steps that succeeded before the
failure are stored); no staging/backup folder (`.NAME.edgeconv-*`) left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


def tree(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Every path under root → its content hash (files), 'dir', or 'link→target' (`ignore`: top-level names left out)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in ignore]
            filenames = [f for f in filenames if f not in ignore]
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


ANSI = "\x1b"
NATIVE_NOISE = re.compile(r"(^|\s)[IWEF]\d{4} \d\d:\d\d:\d\d")  # glog / absl lines (`E1201 12:34:56.789 ...`)


def clean(text: str) -> None:
    """An error line or JSON message holds no colour codes, control characters or native log lines."""
    assert ANSI not in text and not any(ord(c) < 32 and c not in "\n\t" for c in text), repr(text)
    assert not NATIVE_NOISE.search(text), repr(text)


def check_error_text(stderr: str, needles: tuple[str, ...]) -> str:
    lines = stderr.splitlines()
    idx = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(idx) == 1, f"expected exactly one error line:\n{stderr[-3000:]}"
    i = idx[0]
    assert i + 1 < len(lines) and lines[i + 1].startswith("hint:") and lines[i + 1][5:].strip(), \
        f"the error must be one line followed by a hint:\n{stderr[-3000:]}"
    text = f"{lines[i]}\n{lines[i + 1]}"
    clean(text)
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
    clean(text)
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    return error


@dataclass
class Failure:
    text: CliResult
    json: CliResult
    error: dict[str, Any]  # the --json error object


SANDBOX_IGNORED = ("cache",)  # the stage cache's folder (EDGECONV_CACHE_DIR of the cache-on runs): documented
_SANDBOX: list[Path] = []  # the current test's sandbox (set by the autouse fixture below)


def sandbox_env(sandbox: Path, cache: bool) -> dict[str, str]:
    """HOME, TMPDIR and caches inside the sandbox; the stage cache on (a private folder) or off."""
    env = {"HOME": str(sandbox / "home"), "TMPDIR": str(sandbox / "tmp"), "XDG_CACHE_HOME": str(sandbox / "home" / ".cache")}
    if cache:
        env.update({"EDGECONV_NO_CACHE": "0", "EDGECONV_CACHE_DIR": str(sandbox / "cache")})
    else:
        env["EDGECONV_NO_CACHE"] = "1"
    return env


@pytest.fixture(autouse=True)
def sandbox(tmp_path: Path) -> Any:
    """Everything a reliability test's runs may touch lives under tmp_path (HOME, TMPDIR, the working directory, the
    inputs, OUTDIR's folder); expect_failure compares the whole of it before and after."""
    for name in ("home", "tmp", "cwd"):
        (tmp_path / name).mkdir(exist_ok=True)
    _SANDBOX.append(tmp_path)
    yield tmp_path
    _SANDBOX.remove(tmp_path)


def expect_failure(args: list[Any], code: int, *needles: str, workspace: Path, json_too: bool = True,
                   runner: Callable[..., CliResult] = run_cli, **kwargs: Any) -> Failure:
    """Run `edgeconv ARGS` (stage cache on) and `ARGS --json` (cache off; without json_too: ARGS again, cache off) in
    the sandbox; check the failure contract after each; return both results. The caller's env= entries win."""
    box = _SANDBOX[-1] if _SANDBOX else workspace.parent
    before = tree(box, SANDBOX_IGNORED)
    workspace_before = tree(workspace)
    caller_env = kwargs.pop("env", None) or {}
    kwargs.setdefault("cwd", box / "cwd")
    runs: list[CliResult] = []
    for cache, extra in ((True, []), (False, ["--json"] if json_too else [])):
        result = runner(*args, *extra, env={**sandbox_env(box, cache), **caller_env}, **kwargs)
        mode = f"{'--json' if extra else 'text'}, stage cache {'on' if cache else 'off'}"
        no_traceback(result.stderr + result.stdout)
        assert result.code == code, f"{mode}: exit {result.code}, expected {code}:\n{result.stderr[-3000:]}"
        if extra:
            runs.append(result)
            error = check_error_json(result.stdout, code, needles)
        else:
            runs.append(result)
            check_error_text(result.stderr, needles)
        after = tree(box, SANDBOX_IGNORED)
        changed = sorted(set(before.items()) ^ set(after.items()))
        assert after == before, f"{mode}: the sandbox changed: {changed[:10]}"
        if box not in workspace.parents:  # a workspace outside the sandbox is compared on its own too
            assert tree(workspace) == workspace_before, f"{mode}: the workspace changed"
        assert not leftovers(workspace)
    return Failure(runs[0], runs[1], error if json_too else {})


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
