"""edgeconv/outputs.py's OUTDIR lock (filelock): a second writer of one OUTDIR is refused at once with exit 6 and the
holder's PID, the lock file goes with the run, and the lock is a real OS lock (another process is locked out too).
The CLI-level case (two `edgeconv convert` runs) is tests/reliability/test_outputs.py::test_concurrent_runs_locked_out."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeconv.targets.qnn._compile import staged
from edgeconv.errors import OutputError
from edgeconv.outputs import LOCK_SUFFIX, OutputTransaction


def _lock_path(outdir: Path) -> Path:
    return outdir.parent / f".{outdir.name}{LOCK_SUFFIX}"


def test_second_writer_refused_in_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputTransaction(out, force=False) as first:
        assert _lock_path(out).exists()
        with pytest.raises(OutputError) as refused:
            with OutputTransaction(out, force=False):
                pass
        assert refused.value.exit_code == 6
        assert f"pid {os.getpid()}" in str(refused.value) and "another -o" in refused.value.hint
        assert first.staging is not None and first.staging.is_dir()  # the refused run left the holder's staging alone
        (first.staging / "a.txt").write_text("x")
        first.commit()
    assert (out / "a.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file, no staging left
    with OutputTransaction(out, force=True) as again:  # released: the next run takes it
        again.commit()


HOLDER = """
import sys, time
from pathlib import Path
from edgeconv.outputs import OutputTransaction
with OutputTransaction(Path(sys.argv[1]), force=False):
    print("held", flush=True)
    time.sleep(60)
"""


def test_other_process_holding_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError) as refused:
            with OutputTransaction(out, force=True):
                pass
        assert refused.value.exit_code == 6 and f"pid {holder.pid}" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    # a killed holder's flock dies with it: the lock file it left is taken, then removed
    with OutputTransaction(out, force=True) as tx:
        tx.commit()
    assert not _lock_path(out).exists()


STAGER = """
import sys, time
from pathlib import Path
from edgeconv.targets.qnn._compile import staged
with staged(Path(sys.argv[1]), "m.onnx"):
    print("staged", flush=True)
    time.sleep(1.5)
"""


def test_qnn_staging_is_exclusive_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not a model, copied only")
    monkeypatch.setenv("EDGECONV_SHARED_TMPDIR", str(shared))
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(STAGER), str(model)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "EDGECONV_SHARED_TMPDIR": str(shared)})
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "staged"
        started = time.monotonic()
        with staged(model, "m.onnx") as target:
            waited = time.monotonic() - started
            assert target.read_bytes() == model.read_bytes()
        assert waited > 1.0, "staged() ran while another process held the staging folder (it holds it 1.5 s)"
    finally:
        other.kill()
        other.wait()
    assert not (shared / "edgeconv-qnn-stage").exists()
