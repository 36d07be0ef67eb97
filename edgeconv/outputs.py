"""Outputs appear all at once or not at all.

Everything is written into a staging folder beside OUTDIR (`.NAME.edgeconv-tmp-PID-XXXX`), then renamed into place.
A lock file beside OUTDIR stops a second run writing the same OUTDIR. Checks happen before any work: a read-only
parent (exit 6), an existing OUTDIR without --force (exit 2), OUTDIR a symlink (exit 7), `..` in the path (exit 2).
Staging folders left by a killed run (their PID is gone) are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

from edgeconv.errors import OutputError, SafetyError, UsageError

TMP_MARK = ".edgeconv-tmp-"
OLD_MARK = ".edgeconv-old-"
LOCK_SUFFIX = ".edgeconv.lock"
PID_OFFSET = 1  # Windows' LockFileEx holds byte 0 of the lock file: other processes can read from byte 1 on


def _write_pid(fd: int) -> None:
    os.lseek(fd, PID_OFFSET, os.SEEK_SET)
    os.write(fd, f"{os.getpid():<20}".encode())


def _lock_holder(path: Path) -> str:
    """The PID the holder wrote into the lock file, or "?" (unreadable, or not written yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(PID_OFFSET)
            return f.read(64).decode(errors="replace").strip("\x00 \n") or "?"
    except OSError:
        return "?"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while the output is being committed or cleaned up, so a second Ctrl-C cannot leave
    half a rename or half a staging folder behind; a signal that arrived meanwhile is delivered right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE): OUTDIR is never missing, not even for an instant.
    False where the call or the file system does not support it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def disk_full_cause(e: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT / EFBIG (file size limit) error behind `e` (itself, or in its cause/context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return current
        current = current.__cause__ or current.__context__
    return None


def io_error(e: OSError, what: str) -> OutputError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"disk full while {what} ({e.filename or 'no space left on device'})",
                           "free some space or write elsewhere with -o")
    if e.errno == errno.EFBIG:  # RLIMIT_FSIZE (`ulimit -f`) or the file system's largest file
        return OutputError(f"file size limit reached while {what} ({e.filename or 'file too large'})",
                           "raise the limit (ulimit -f), or write elsewhere with -o")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"permission denied while {what}: {e.filename}", "choose a writable output directory with -o")
    return OutputError(f"I/O error while {what}: {e.strerror} ({e.filename})", "check the output location")


def check_output_path(outdir: Path, force: bool, protected: tuple[Path | str, ...] = ()) -> None:
    """Everything that can be known about the destination before any work starts. `protected`: inputs (source model,
    sample folders) that must not live inside OUTDIR, which --force replaces as a whole; the current directory too."""
    if ".." in Path(os.path.normpath(str(outdir))).parts or ".." in outdir.parts:
        raise UsageError(f"output path {outdir} contains '..'", "give the output directory without '..'")
    if outdir.is_symlink():
        raise SafetyError(f"output path {outdir} is a symlink to {os.readlink(outdir)}",
                          "edgeconv replaces OUTDIR as a whole; give a real directory path")
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output path {outdir} exists and is not a directory", "choose another -o")
    if outdir.exists() and not force:
        raise UsageError(f"output directory {outdir} already exists", "pass --force to replace it (atomically)")
    _check_not_replacing_inputs(outdir, protected)
    parent = outdir.absolute().parent
    existing = parent
    while not existing.exists() and existing != existing.parent:  # created when the run starts writing, not now
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"output path {outdir}: {existing} is not a directory", "choose another -o")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing} (read-only or no permission)", "choose a writable output directory with -o")


def factory_paths(spec: str | None) -> tuple[Path, ...]:
    """Where a `--model package.module:function` factory's code lives (its top-level package folder or module file, on
    sys.path or in the current directory), found without importing anything: inputs --force must not delete."""
    if not spec:
        return ()
    top = spec.split(":")[0].split(".")[0]
    if not top:
        return ()
    import sys

    found = []
    for entry in dict.fromkeys([os.getcwd(), *(p or os.getcwd() for p in sys.path if isinstance(p, str))]):
        for candidate in (Path(entry) / top, Path(entry) / f"{top}.py"):
            try:
                if candidate.exists():
                    found.append(candidate)
            except (OSError, ValueError):
                pass
    return tuple(found)


def _check_not_replacing_inputs(outdir: Path, protected: tuple[Path | str, ...]) -> None:
    target = outdir.resolve()
    for item, what in [*((p, "the input") for p in protected if p), (Path.cwd(), "the current directory")]:
        path = Path(item).resolve()
        if path == target or target in path.parents:
            raise SafetyError(f"output directory {outdir} contains {what} {item}: replacing OUTDIR would delete it",
                              "write the output to a folder of its own, e.g. -o out/")


def _make_parents(outdir: Path) -> list[Path]:
    """Create OUTDIR's missing parent folders; return them (deepest first) so a failed run can remove them again."""
    parent = outdir.absolute().parent
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as e:
        raise io_error(e, f"creating {folder}") from e
    return missing


def clean_stale(outdir: Path) -> list[Path]:
    """Remove staging/backup folders of OUTDIR left by runs that were killed."""
    removed = []
    parent = outdir.absolute().parent
    prefix = f".{outdir.name}"
    for path in parent.glob(f"{prefix}.edgeconv-*"):
        for mark in (TMP_MARK, OLD_MARK):
            if path.name.startswith(prefix + mark):
                pid_text = path.name[len(prefix + mark):].split("-")[0]
                if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
    return removed


class OutputTransaction:
    """with OutputTransaction(outdir, force) as tx: write into tx.staging; tx.commit() renames it into place."""

    def __init__(self, outdir: Path, force: bool, protected: tuple[Path | str, ...] = ()):
        self.outdir = Path(outdir)
        self.force = force
        self.protected = protected
        self.staging: Path | None = None
        self._lock: Any = None  # a filelock.FileLock while held
        self._lock_path = self.outdir.absolute().parent / f".{self.outdir.name}{LOCK_SUFFIX}"
        self.committed = False

    def __enter__(self) -> "OutputTransaction":
        check_output_path(self.outdir, self.force, self.protected)
        self._created = _make_parents(self.outdir)
        try:
            self._acquire_lock()
        except BaseException:
            self._remove_created()
            raise
        try:
            clean_stale(self.outdir)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.outdir.name}{TMP_MARK}{os.getpid()}-",
                                                 dir=self.outdir.absolute().parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.staging, 0o777 & ~umask)  # mkdtemp makes it 0700; OUTDIR gets the usual mode
        except OSError as e:
            self.__exit__(None, None, None)
            raise io_error(e, "creating the staging folder") from e
        return self

    def _acquire_lock(self) -> None:
        """One non-blocking attempt (filelock: flock on POSIX, LockFileEx on Windows); the holder's PID is written
        after the one byte Windows locks, so a second run can name it on either platform."""
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_path, blocking=False, thread_local=False, on_acquired=_write_pid)
        try:
            lock.acquire()
        except Timeout:
            holder = _lock_holder(self._lock_path)
            raise OutputError(f"another edgeconv run (pid {holder}) is writing {self.outdir} (lock {self._lock_path})",
                              f"wait for pid {holder} to finish, or write to another -o") from None
        except OSError as e:
            raise io_error(e, f"creating the lock {self._lock_path}") from e
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            try:  # while still held: a run that opened this file before the unlink sees it unlinked and retries
                os.unlink(self._lock_path)
            except OSError:
                pass
            self._lock.release(force=True)
            self._lock = None

    def commit(self) -> None:
        assert self.staging is not None
        with signals_blocked():
            self._commit()

    def _commit(self) -> None:
        assert self.staging is not None
        old = None
        try:
            if self.outdir.is_symlink() or (self.outdir.exists() and not self.outdir.is_dir()):
                raise SafetyError(f"output path {self.outdir} was replaced by a link or a file during the run",
                                  "give a real directory path")
            if self.outdir.exists():
                if not self.force:  # appeared while we worked
                    raise UsageError(f"output directory {self.outdir} appeared during the run", "pass --force to replace it")
                if _exchange(self.staging, self.outdir):  # the previous output now sits at the staging path
                    old, self.staging = self.staging, None
                else:
                    old = self.outdir.absolute().parent / f".{self.outdir.name}{OLD_MARK}{os.getpid()}"
                    os.rename(self.outdir, old)
            if self.staging is not None:
                os.rename(self.staging, self.outdir)
        except OSError as e:
            if old is not None and old.exists() and not self.outdir.exists():
                os.rename(old, self.outdir)  # put the previous output back
            raise io_error(e, f"moving the result into {self.outdir}") from e
        self.staging = None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with signals_blocked():
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                self.staging = None
            self._release_lock()
            if not self.committed:
                self._remove_created()

    def _remove_created(self) -> None:
        for folder in getattr(self, "_created", []):  # deepest first; only while empty
            try:
                folder.rmdir()
            except OSError:
                break
