"""ONNX external data that is not a plain file inside the model's folder (docs/exit-codes.md, row 4; issue 13): a
symlink loop, a FIFO / socket / directory, and tensors outside graph.initializer (sparse initializers, Constant
attributes, If branches, function bodies) pointing outside the folder. Every case goes through `expect_failure`."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import onnx
import pytest

from tests.reliability.conftest import expect_failure
from tests.sources.external_models import PLACES, build, make_special_file, relocate, tensor_named


def _with_external_data(digits, folder: Path) -> tuple[Path, str]:
    """The digits CNN with every weight in folder/weights.bin; the name of the first tensor stored there."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load_model(str(digits.onnx))
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    first = onnx.load_model(str(path), load_external_data=False).graph.initializer[0].name
    return path, first


def _lstat_tree(root: Path) -> dict[str, str]:
    """Like conftest.tree, but never opens anything that is not a regular file (a FIFO would block the reader)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[str(path.relative_to(root))] = f"{stat.filemode(mode)} {os.readlink(path) if path.is_symlink() else ''}"
    return out


# ---------------------------------------------------------------- a symlink loop: refused for safety (7)
@pytest.mark.parametrize("loop", ["self", "cycle", "folder-loop"])
def test_external_data_symlink_loop_refused(cli, digits, ws: Path, inputs: Path, loop: str) -> None:
    path, first = _with_external_data(digits, inputs / "model")
    folder = path.parent
    data = folder / "weights.bin"
    data.unlink()
    location = "weights.bin"
    if loop == "self":  # weights.bin -> weights.bin
        data.symlink_to("weights.bin")
    elif loop == "cycle":  # weights.bin -> b -> weights.bin
        data.symlink_to("b")
        (folder / "b").symlink_to("weights.bin")
    else:  # sub/weights.bin where sub -> sub
        (folder / "sub").symlink_to("sub")
        location = "sub/weights.bin"
        relocate(path, location)
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 7, "symbolic link loop", repr(location),
                   repr(first), workspace=ws)


# ---------------------------------------------------------------- not a regular file: FIFO / socket 7, directory 3
@pytest.mark.parametrize("kind, code, needle", [
    ("fifo", 7, "a FIFO (named pipe), not a regular file"),
    ("link-to-fifo", 7, "a FIFO (named pipe), not a regular file"),
    ("socket", 7, "a socket, not a regular file"),
    ("directory", 3, "a directory, not a regular file"),
])
def test_external_data_not_a_regular_file(cli, digits, ws: Path, tmp_path_factory: pytest.TempPathFactory, kind: str,
                                          code: int, needle: str) -> None:
    # the model lies outside the sandbox (whose byte-for-byte comparison would open the FIFO and block): its folder is
    # compared here without opening anything but regular files
    path, first = _with_external_data(digits, tmp_path_factory.mktemp("special") / "model")
    data = path.parent / "weights.bin"
    if kind == "directory":
        data.unlink()
        data.mkdir()
    else:
        make_special_file(data, kind)
    before = _lstat_tree(path.parent)
    # a reader of the FIFO would block forever: the timeout turns that into a failure instead of a hung suite
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], code, needle, "'weights.bin'", repr(first),
                   workspace=ws, timeout=120)
    assert _lstat_tree(path.parent) == before


# ---------------------------------------------------------------- every TensorProto is checked, not only initializers
CASES = [(place, "dotdot") for place in PLACES] + [
    ("sparse-initializer", "absolute"), ("sparse-initializer", "symlink"),
    ("constant-sparse", "absolute"), ("constant-sparse", "symlink"),
    ("if-sparse-initializer", "symlink"), ("function-if-initializer", "symlink"),
]


@pytest.mark.parametrize("place, attack", CASES)
def test_external_data_anywhere_escaping_refused(cli, ws: Path, inputs: Path, place: str, attack: str) -> None:
    path = build(inputs / "model", place, "weights.bin")
    outside = inputs / "secret.bin"
    os.replace(inputs / "model" / "weights.bin", outside)  # the data sits outside the model's folder
    if attack == "symlink":
        (inputs / "model" / "weights.bin").symlink_to(outside)
    else:
        path = build(inputs / "model", place, "../secret.bin" if attack == "dotdot" else str(outside))
        (inputs / "model" / "weights.bin").unlink()
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 7, "outside the model's folder",
                   tensor_named(place), workspace=ws)
