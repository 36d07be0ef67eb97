"""Output safety (cases 9-12, 18, 19 of docs/exit-codes.md): bad destinations are refused before any work, a full
disk or a signal leaves the previous output intact and nothing behind, concurrent runs are locked out, runs are
reproducible, and a reader that closes stdout early causes no traceback."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from tests.conftest import REPO, CliResult, run_cli
from tests.reliability.conftest import INT8_PROFILE, expect_failure, leftovers, no_traceback, popen_cli, tree

SLOW_SAMPLES = 6000  # calibration long enough (seconds, ~5-10) to be interrupted or locked out in the middle of it


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[None]:
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def slow_calib(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(profile file, calibration folder) for an int8 run whose calibration takes seconds."""
    folder = tmp_path_factory.mktemp("slow")
    calib = folder / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i, a in enumerate(rng.uniform(0, 1, (SLOW_SAMPLES, 1, 1, 8, 8)).astype(np.float32)):
        np.save(calib / f"{i:05d}.npy", a)
    profile = folder / "int8-test.toml"
    profile.write_text(INT8_PROFILE.format(samples=SLOW_SAMPLES))
    return profile, calib


def _staging(ws: Path) -> list[Path]:
    return sorted(ws.glob(".out.edgeconv-tmp-*"))


def _wait_for_stage(proc: subprocess.Popen[str], ws: Path, stage: str, timeout: float = 120) -> None:
    """Until the run's staging folder has a work dir for `stage` (e.g. 'quantize')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        if any(s.exists() for s in ws.glob(f".out.edgeconv-tmp-*/.work/*{stage}*")):
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"stage {stage} never started")


# ---------------------------------------------------------------- 9. the destination
def test_read_only_parent_fails_before_any_work(digits, tmp_path: Path, inputs: Path) -> None:
    ro = tmp_path / "ro"
    empty = inputs / "empty.onnx"
    empty.write_bytes(b"")  # would fail with exit 3 once read: exit 6 proves the output was checked first
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o555)
        context: Any = contextlib.nullcontext()
    else:  # root writes anywhere a mode allows: only a read-only file system says no
        context = mounted_tmpfs(ro, "ro,size=64k")
    with context:
        expect_failure(["convert", empty, "-t", "onnx", "-o", ro / "out"], 6, "cannot write", str(ro), workspace=ro)
    if os.geteuid() != 0:
        ro.chmod(0o755)


READ_ONLY_RUNNER = textwrap.dedent("""
    # Run edgeconv as if EDGECONV_TEST_RO were on a read-only file system (works unprivileged, and as root, where a
    # mode bit refuses nothing): os.access says no, and every write, mkdir or rename under it fails with EROFS.
    import builtins, errno, os, sys
    ro = os.path.realpath(os.environ["EDGECONV_TEST_RO"])
    def under(path):
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return p == ro or p.startswith(ro + os.sep)
    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
    real_access, real_open, real_mkdir, real_rename, real_builtin_open = os.access, os.open, os.mkdir, os.rename, builtins.open
    def access(path, mode, *a, **k):
        if under(path) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)
    def os_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *a, **k)
    def mkdir(path, *a, **k):
        if under(path):
            refuse(path)
        return real_mkdir(path, *a, **k)
    def rename(src, dst, *a, **k):
        if under(src) or under(dst):
            refuse(dst)
        return real_rename(src, dst, *a, **k)
    def builtin_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and under(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_builtin_open(file, mode, *a, **k)
    os.access, os.open, os.mkdir, os.rename, builtins.open = access, os_open, mkdir, rename, builtin_open
    from edgeconv.cli.app import main
    main(sys.argv[1:])
""")


def script_runner(script: Path, extra_env: dict[str, str] | None = None, preexec: Any = None) -> Any:
    """A runner for expect_failure: `python SCRIPT ARGS` (a script that patches something, then runs the CLI)."""
    def runner(*args: Any, **kwargs: Any) -> CliResult:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **(extra_env or {}),
               **kwargs.get("env", {})}
        proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=env,
                              cwd=kwargs.get("cwd", REPO), timeout=300, preexec_fn=preexec)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
    return runner


def test_read_only_parent_injected(digits, tmp_path: Path, inputs: Path) -> None:
    """The same as on a read-only mount, without mounting anything (so it never skips): exit 6 before any work."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("not edgeconv's")
    empty = inputs / "empty.onnx"
    empty.write_bytes(b"")  # exit 3 once read: exit 6 proves the output was checked first
    script = tmp_path / "cwd" / "ro_edgeconv.py"
    script.write_text(READ_ONLY_RUNNER)
    runner = script_runner(script, {"EDGECONV_TEST_RO": str(ro)})
    expect_failure(["convert", empty, "-t", "onnx", "-o", ro / "out"], 6, "cannot write", str(ro), workspace=ro,
                   runner=runner)
    expect_failure(["convert", empty, "-t", "onnx", "-o", ro / "a" / "b" / "out"], 6, "cannot write", workspace=ro,
                   runner=runner)


def _file_size_limit(limit: int) -> Any:
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_file_size_limit_keeps_previous_output(cli, digits, ws: Path, tmp_path: Path) -> None:
    """`ulimit -f` below the model's size (RLIMIT_FSIZE, unprivileged, never skips): exit 6, the previous OUTDIR intact,
    nothing left behind; like a disk that fills up."""
    out = ws / "out"
    assert cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out).code == 0
    previous = tree(out)
    script = tmp_path / "cwd" / "plain_edgeconv.py"
    script.write_text("import sys\nfrom edgeconv.cli.app import main\nmain(sys.argv[1:])\n")
    limit = digits.onnx.stat().st_size // 2
    expect_failure(["convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out, "--force"], 6,
                   "file size limit", "ulimit -f", workspace=ws, runner=script_runner(script, preexec=_file_size_limit(limit)))
    assert tree(out) == previous


def test_existing_output_needs_force(digits, ws: Path) -> None:
    out = ws / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", out], 2, "already exists", "--force", workspace=ws)


def test_force_replaces_atomically(cli, digits, ws: Path) -> None:
    out = ws / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    result = cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out, "--force")
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "onnx"]
    assert sorted(p.name for p in ws.iterdir()) == ["out"]  # no staging, backup or lock left
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)  # a normal directory, not mkdtemp's private one


def test_output_symlink_refused(digits, ws: Path) -> None:
    elsewhere = ws / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("not edgeconv's")
    (ws / "out").symlink_to(elsewhere)
    expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", ws / "out", "--force"], 7, "symlink", str(elsewhere),
                   workspace=ws)


def test_missing_parents_not_left_behind(digits, ws: Path, inputs: Path) -> None:
    """-o a/b/out on a run that fails: the parents it would have created are not left behind."""
    bad = inputs / "bad.onnx"
    bad.write_bytes(b"\x08\x08\x12" + b"\xff" * 40)
    expect_failure(["convert", bad, "-t", "onnx", "-o", ws / "a" / "b" / "out"], 3, "truncated", workspace=ws,
                   json_too=False)
    # SNR tops out at 300 dB: a gate of 400 dB fails after writing started
    nested = [digits.onnx, "-t", "onnx", "-o", ws / "a" / "b" / "out", "--eval", digits.eval, "--set", "validate.gate.min_snr_db=400"]
    expect_failure(["convert", *nested], 5, "accuracy gate", workspace=ws, json_too=False)  # failed after writing started


@pytest.mark.parametrize("where", ["source", "calib", "cwd"])
def test_force_never_replaces_a_folder_holding_inputs(digits, ws: Path, where: str) -> None:
    """`-o models --force` where models/ holds the source model (or the samples, or the shell's cwd) would delete it."""
    out = ws / "models"
    out.mkdir()
    model = out / "model.onnx"
    model.write_bytes(digits.onnx.read_bytes())
    args: list[Any] = ["convert", model if where == "source" else digits.onnx, "-t", "onnx", "-o", out, "--force"]
    if where == "calib":
        calib = out / "data" / "calib"
        calib.mkdir(parents=True)
        np.save(calib / "0.npy", np.zeros((1, 1, 8, 8), np.float32))
        args += ["--calib", calib]
    kwargs = {"cwd": out} if where == "cwd" else {}
    expect_failure(args, 7, "would delete it", workspace=ws, json_too=where == "source", **kwargs)
    assert model.read_bytes() == digits.onnx.read_bytes()


def test_dotdot_in_output_refused(digits, ws: Path) -> None:
    (ws / "sub").mkdir()
    expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", ws / "sub" / ".." / "out"], 2, "'..'", workspace=ws)


# ---------------------------------------------------------------- 10. disk full
def test_disk_full_on_tmpfs_keeps_previous_output(cli, digits, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with mounted_tmpfs(disk, "size=1m"):
        out = disk / "out"
        first = cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out)
        assert first.code == 0, first.stderr
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 24 * 1024))  # room for less than one model copy
        expect_failure(["convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out, "--force"], 6,
                       "disk full", workspace=disk)
        assert json.loads((out / "manifest.json").read_text())["targets"][0]["target"] == "onnx"


ENOSPC_RUNNER = textwrap.dedent("""
    # Run edgeconv with every file copy into a staging folder failing with ENOSPC (a disk that fills up mid-write).
    import errno, shutil, sys
    real_copyfile = shutil.copyfile
    def copyfile(src, dst, *args, **kwargs):
        if ".edgeconv-tmp-" in str(dst) and "/.work/" not in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copyfile(src, dst, *args, **kwargs)
    shutil.copyfile = copyfile
    from edgeconv.cli.app import main
    main(sys.argv[1:])
""")


def test_disk_full_injected_keeps_previous_output(cli, digits, ws: Path, tmp_path: Path) -> None:
    runner_file = tmp_path / "enospc_edgeconv.py"
    runner_file.write_text(ENOSPC_RUNNER)

    def runner(*args: Any, **kwargs: Any) -> CliResult:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **kwargs.get("env", {})}
        proc = subprocess.run([sys.executable, str(runner_file), *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=kwargs.get("cwd", REPO), timeout=300)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    out = ws / "out"
    assert cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out).code == 0
    expect_failure(["convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", out, "--force"], 6,
                   "disk full", "free some space", workspace=ws, runner=runner)


# ---------------------------------------------------------------- 11. signals
@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_calibration(digits, ws: Path, tmp_path: Path, slow_calib: tuple[Path, Path], sig: int,
                                   code: int) -> None:
    profile, calib = slow_calib
    private_tmp = tmp_path / "tmp"  # the toolchains' own temp files (ORT's ort.quant.* folders) must go too
    private_tmp.mkdir(exist_ok=True)  # the sandbox made it already
    proc = popen_cli("convert", digits.onnx, "-t", profile, "--calib", calib, "-o", ws / "out", "--json",
                     env={"TMPDIR": str(private_tmp)})
    _wait_for_stage(proc, ws, "quantize")
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    no_traceback(stdout + stderr)
    assert proc.returncode == code, stderr[-2000:]
    error = json.loads(stdout)["error"]
    assert error["code"] == code and signal.Signals(sig).name in error["message"] and error["hint"]
    assert tree(ws) == {}, "something was left behind"
    left = tree(private_tmp)  # the run's private TMPDIR (ORT's .ses, ort.quant.*) is removed with the signal too
    assert not left, f"temporary files were left behind: {left}"


@pytest.mark.slow
def test_run_after_sigkill_cleans_stale_staging(cli, digits, ws: Path, slow_calib: tuple[Path, Path]) -> None:
    profile, calib = slow_calib
    proc = popen_cli("convert", digits.onnx, "-t", profile, "--calib", calib, "-o", ws / "out")
    _wait_for_stage(proc, ws, "quantize")
    proc.kill()
    proc.wait(timeout=60)
    assert _staging(ws), "a SIGKILLed run leaves its staging folder (nothing can clean up after SIGKILL)"
    later = cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", ws / "out")
    assert later.code == 0, later.stderr
    assert sorted(p.name for p in ws.iterdir()) == ["out"], leftovers(ws)


# ---------------------------------------------------------------- 12. two runs, one OUTDIR
def _load_output(out: Path) -> str:
    """Read OUTDIR as one consistent version (through a directory fd) and load its model; return the manifest hash.
    The version a reader opened can be retired under it (the commit swaps the folders, then deletes the old one):
    then the path already shows the new version, and the reader reads again."""
    for _ in range(20):
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # OUTDIR itself is never missing: no retry for that
        try:
            return _load_version(fd)
        except FileNotFoundError:  # the version behind `fd` was retired while being read
            time.sleep(0.01)
    raise AssertionError(f"{out}: no complete version could be read")


def _load_version(fd: int) -> str:
    import onnxruntime as ort

    try:
        manifest_fd = os.open("manifest.json", os.O_RDONLY, dir_fd=fd)
        with os.fdopen(manifest_fd) as f:
            manifest = json.load(f)
        rel = manifest["targets"][0]["artifacts"][0]["path"]
        model_fd = os.open(rel, os.O_RDONLY, dir_fd=fd)
        with os.fdopen(model_fd, "rb") as f:
            ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
        return manifest["targets"][0]["artifacts"][0]["sha256"]
    finally:
        os.close(fd)


@pytest.mark.slow
def test_concurrent_runs_locked_out(cli, digits, ws: Path, slow_calib: tuple[Path, Path], profiles: Path) -> None:
    profile, calib = slow_calib
    out = ws / "out"
    quick = cli("convert", digits.onnx, "-t", profiles / "int8-test.toml", "--calib", digits.calib, "-o", out)
    assert quick.code == 0, quick.stderr
    first_hash = _load_output(out)
    first = popen_cli("convert", digits.onnx, "-t", profile, "--calib", calib, "-o", out, "--force")
    _wait_for_stage(first, ws, "quantize")
    second = cli("convert", digits.onnx, "-t", "onnx", "-o", out, "--force", "--json")
    no_traceback(second.stderr)
    if second.code != 6:
        assert first.poll() is None, "the first run ended before the second tried the lock: calibrate on more samples"
    assert second.code == 6, second.stderr
    error = json.loads(second.stdout)["error"]
    assert f"pid {first.pid}" in error["message"] and error["hint"]
    seen = set()
    while first.poll() is None:  # the output is loadable at every moment, old or new
        seen.add(_load_output(out))
        time.sleep(0.02)
    assert first.returncode == 0, first.communicate()[1][-2000:]
    seen.add(_load_output(out))
    assert first_hash in seen and len(seen) == 2  # both versions were read, never a missing or partial one
    assert sorted(p.name for p in ws.iterdir()) == ["out"], leftovers(ws)


# ---------------------------------------------------------------- 18. reproducible
@pytest.mark.slow
def test_same_run_twice_same_hashes(cli, digits, tmp_path: Path, profiles: Path) -> None:
    hashes = []
    for name in ("a", "b"):
        result = cli("convert", digits.onnx, "-t", "onnx", "-t", profiles / "int8-test.toml", "--calib", digits.calib,
                     "--eval", digits.eval, "-o", tmp_path / name, "--json")
        assert result.code == 0, result.stderr
        manifest = json.loads(result.stdout)
        hashes.append({a["path"]: a["sha256"] for t in manifest["targets"] for a in t["artifacts"]})
    assert hashes[0] == hashes[1] and len(hashes[0]) == 2


# ---------------------------------------------------------------- 19. stdout closed early
@pytest.mark.parametrize("args", [
    ["targets"],
    ["--help"],
    ["convert", "{onnx}", "-t", "onnx", "--eval", "{eval}", "-o", "{out}"],
    ["convert", "{onnx}", "-t", "onnx", "--eval", "{eval}", "-o", "{out}", "--json"],
    ["convert", "{missing}", "-t", "onnx", "-o", "{out}", "--json"],
], ids=["targets", "help", "convert", "convert-json", "error-json"])
def test_closed_stdout_no_traceback(digits, tmp_path: Path, args: list[str]) -> None:
    values = {"onnx": digits.onnx, "eval": digits.eval, "out": tmp_path / "out", "missing": tmp_path / "missing.onnx"}
    argv = [a.format(**values) for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written: every write gets EPIPE
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-m", "edgeconv", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=REPO, timeout=300)
    finally:
        os.close(write_end)
    no_traceback(proc.stderr)
    assert "BrokenPipe" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    expected = 3 if "{missing}" in args else 0  # the command's own result: a closed pipe is not an error
    assert proc.returncode == expected, proc.stderr
    if "convert" in argv and expected == 0:
        assert (tmp_path / "out" / "manifest.json").exists()


def test_head_in_a_shell_pipeline(tmp_path: Path) -> None:
    script = f"set -o pipefail; {sys.executable} -m edgeconv targets | head -c 10 >/dev/null"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    no_traceback(proc.stderr)
    assert proc.returncode == 0, proc.stderr
