"""sources/onnx_source.py's external-data checks, in process: every TensorProto of a model is found (sparse
initializers, Constant attributes, If branches, function bodies) and checked before anything reads it; symlink loops,
FIFOs, sockets and devices are refused (exit 7) without being opened; directories are invalid input (exit 3)."""

from __future__ import annotations

import builtins
import errno
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.external_data_helper import uses_external_data

from edgeconv.errors import InvalidInputError, SafetyError
from edgeconv.sources.onnx_source import (
    external_data_files,
    load_onnx_checked,
    model_tensors,
)
from tests.sources.external_models import PLACES, W, build, make_special_file, tensor_named


def _proto(path: Path) -> onnx.ModelProto:
    return onnx.load_model(str(path), load_external_data=False)


@pytest.mark.parametrize("place", PLACES)
def test_every_place_is_found_and_loaded(tmp_path: Path, place: str) -> None:
    path = build(tmp_path / "m", place)
    model = _proto(path)
    external = [what for tensor, what in model_tensors(model) if uses_external_data(tensor)]
    assert len(external) == (2 if "sparse" in place else 1), external
    assert external_data_files(model, path) == {path.parent / "weights.bin": (24 if "sparse" in place else 16)}
    loaded = load_onnx_checked(path)  # sparse tensors too: onnx's own loader leaves them external
    assert not [what for tensor, what in model_tensors(loaded) if uses_external_data(tensor)]
    onnx.checker.check_model(loaded)
    values = [onnx.numpy_helper.to_array(t) for t, _ in model_tensors(loaded) if t.dims and t.dims[0] in (2, 4)]
    assert any(np.array_equal(v, W) or np.array_equal(v, [1.0, 2.0]) for v in values)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink"])
def test_every_place_escaping_is_refused(tmp_path: Path, place: str, attack: str) -> None:
    outside = tmp_path / "secret.bin"
    path = build(tmp_path / "m", place, {"dotdot": "../secret.bin", "absolute": str(outside)}.get(attack, "weights.bin"))
    os.replace(path.parent / "weights.bin", outside)
    if attack == "symlink":
        (path.parent / "weights.bin").symlink_to(outside)
    with pytest.raises(SafetyError, match="outside the model's folder") as info:
        external_data_files(_proto(path), path)
    assert tensor_named(place) in info.value.message


def _loop(folder: Path, kind: str) -> None:
    data = folder / "weights.bin"
    data.unlink()
    if kind == "self":
        data.symlink_to("weights.bin")
    else:
        data.symlink_to("b")
        (folder / "b").symlink_to("weights.bin")


@pytest.mark.parametrize("kind", ["self", "cycle"])
@pytest.mark.parametrize("place", ["initializer", "sparse-initializer", "if-constant"])
def test_symlink_loop_is_refused(tmp_path: Path, kind: str, place: str) -> None:
    path = build(tmp_path / "m", place)
    _loop(path.parent, kind)
    with pytest.raises(SafetyError, match="'weights.bin', a symbolic link loop") as info:
        load_onnx_checked(path, with_data=False)
    assert tensor_named(place) in info.value.message and info.value.exit_code == 7


def test_symlink_loop_found_by_stat_when_resolve_does_not_raise(tmp_path: Path, monkeypatch) -> None:
    """Python 3.13's Path.resolve() no longer raises on a loop (it returns the path as it is): stat's ELOOP says it."""
    path = build(tmp_path / "m", "initializer")
    _loop(path.parent, "cycle")
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(os.path.abspath(self)))
    with pytest.raises(SafetyError, match="symbolic link loop"):
        external_data_files(_proto(path), path)


@pytest.fixture
def never_opened(monkeypatch):
    """Fail the test if anything opens the data file (a FIFO would block the reader forever)."""
    watched: list[Path] = []
    real_open, real_os_open = builtins.open, os.open

    def guard(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(Path(file).name == w.name for w in watched):
            raise AssertionError(f"{file} was opened")
        return real_open(file, *args, **kwargs)

    def os_guard(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(Path(file).name == w.name for w in watched):
            raise AssertionError(f"{file} was opened")
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guard)
    monkeypatch.setattr(os, "open", os_guard)
    return watched


def _make_device(data: Path, monkeypatch) -> None:
    """A character device (1, 3: /dev/null) inside the folder: mknod where allowed, else stat reports one."""
    try:
        os.mknod(data, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        return
    except PermissionError:
        pass
    data.write_bytes(b"")
    real_stat = Path.stat

    def fake(self, *args, **kwargs):
        result = real_stat(self, *args, **kwargs)
        if self.name == data.name:
            return os.stat_result((stat.S_IFCHR | 0o600, *tuple(result)[1:]))
        return result

    monkeypatch.setattr(Path, "stat", fake)


@pytest.mark.parametrize("kind, error, needle", [
    ("fifo", SafetyError, "is a FIFO (named pipe), not a regular file"),
    ("link-to-fifo", SafetyError, "is a FIFO (named pipe), not a regular file"),
    ("socket", SafetyError, "is a socket, not a regular file"),
    ("device", SafetyError, "is a character device, not a regular file"),
    ("directory", InvalidInputError, "is a directory, not a regular file"),
])
@pytest.mark.parametrize("place", ["initializer", "sparse-initializer"])
def test_not_a_regular_file(tmp_path: Path, monkeypatch, never_opened, kind: str, error, needle: str,
                            place: str) -> None:
    path = build(tmp_path / "m", place)
    data = path.parent / "weights.bin"
    if kind == "device":
        data.unlink()
        _make_device(data, monkeypatch)
    elif kind == "directory":
        data.unlink()
        data.mkdir()
    else:
        pipe = make_special_file(data, kind)
        if pipe is not None:
            never_opened.append(pipe)
    never_opened.append(data)
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
        load_onnx_checked(path)  # with the data: the check comes before any read
    assert "'weights.bin'" in info.value.message and tensor_named(place) in info.value.message


def test_missing_and_short_name_the_tensor(tmp_path: Path) -> None:
    path = build(tmp_path / "m", "constant-sparse")
    data = path.parent / "weights.bin"
    data.write_bytes(data.read_bytes()[:20])
    with pytest.raises(InvalidInputError, match=r"'weights.bin' of the sparse tensor's values .* too short \(20 bytes, needs 24\)"):
        external_data_files(_proto(path), path)
    data.unlink()
    with pytest.raises(InvalidInputError, match="'weights.bin' of the sparse tensor's values .* is missing"):
        external_data_files(_proto(path), path)


def test_other_stat_errors_are_invalid_input(tmp_path: Path) -> None:
    path = build(tmp_path / "m", "initializer", "sub/weights.bin")  # sub is a file, not a folder: ENOTDIR
    (path.parent / "sub").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="cannot be read") as info:
        external_data_files(_proto(path), path)
    assert info.value.exit_code == 3 and os.strerror(errno.ENOTDIR) in info.value.message


def test_nul_in_location_is_invalid_input(tmp_path: Path) -> None:
    path = build(tmp_path / "m", "initializer", "weights\x00.bin")
    with pytest.raises(InvalidInputError, match="NUL byte"):
        external_data_files(_proto(path), path)


def test_onnx_walker_misses_what_ours_finds(tmp_path: Path) -> None:
    """Why model_tensors exists: onnx's _get_all_tensors skips sparse tensors and initializers of function subgraphs."""
    from onnx.external_data_helper import _get_all_tensors

    for place in ("sparse-initializer", "constant-sparse", "if-sparse-initializer", "function-if-initializer"):
        model = _proto(build(tmp_path / place, place))
        assert not [t for t in _get_all_tensors(model) if uses_external_data(t)], place
        assert [t for t, _ in model_tensors(model) if uses_external_data(t)], place
