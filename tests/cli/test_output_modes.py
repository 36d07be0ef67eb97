"""Quiet when not a terminal, progress and stage lines on a terminal, logs with -v, one JSON object with --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
ENV.pop("COLUMNS", None)


def _convert(digits, out: Path, *extra: str, verbose: bool = False, stderr_tty: bool = False) -> tuple[int, str, str]:
    args = [sys.executable, "-m", "edgeconv", *(["-v"] if verbose else []), "convert", digits.onnx, "-t", "onnx-fp16",
            "--eval", digits.eval, "-o", out, *extra]
    if not stderr_tty:
        proc = subprocess.run(list(map(str, args)), capture_output=True, text=True, env=ENV, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=slave, text=True, env=ENV)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the pty
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_quiet_when_not_a_terminal(digits, tmp_path: Path) -> None:
    code, stdout, stderr = _convert(digits, tmp_path / "out")
    assert code == 0, stderr
    assert stderr == ""  # no progress bars, no stage lines, no toolchain chatter
    assert "onnx-fp16" in stdout and "ok" in stdout  # the result table, untruncated in a pipe
    assert "onnx-fp16/digits_cnn.onnx" in stdout


def test_verbose_logs_stages(digits, tmp_path: Path) -> None:
    code, stdout, stderr = _convert(digits, tmp_path / "out", verbose=True)
    assert code == 0, stderr
    assert "normalise" in stderr and "validate" in stderr


def test_terminal_shows_progress(digits, tmp_path: Path) -> None:
    code, stdout, stderr = _convert(digits, tmp_path / "out", stderr_tty=True)
    assert code == 0, stderr
    assert "validat" in stderr  # the stage lines / the validation bar, drawn on the terminal
    assert "onnx-fp16" in stdout


def test_json_keeps_stdout_to_one_object(digits, tmp_path: Path) -> None:
    code, stdout, stderr = _convert(digits, tmp_path / "out", "--json", stderr_tty=True)
    assert code == 0, stderr
    assert json.loads(stdout)["targets"][0]["target"] == "onnx-fp16"
    assert "validating" not in stderr  # no progress bars in JSON mode
