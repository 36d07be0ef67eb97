"""Checks on the container of a model (zip archive or directory) before any framework opens it.

A zip archive (.keras, .pt2, TorchScript, pickled torch zip) is refused (exit 7) when a member name escapes the archive
(`../`, an absolute path, a drive letter), a member is a symlink, or it would inflate beyond what a model plausibly holds
(a zip bomb: total uncompressed size over MAX_UNZIPPED_BYTES, or a compressed member / the whole archive inflating more
than MAX_RATIO times). Only the central directory is read; nothing is decompressed.

A directory model (SavedModel, .mlpackage) is refused (exit 7) when any symlink inside it points outside the folder:
the same rule as ONNX external data (sources/onnx_source.py). So is an HDF5 file (Keras .h5, a .keras archive's
weights) with external links, external-file datasets or virtual datasets mapping other files.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from edgeconv.errors import InvalidInputError, SafetyError

MAX_UNZIPPED_BYTES = 64 << 30  # 64 GiB: far beyond any model edgeconv converts
MAX_RATIO = 100  # deflated weights compress ~1.1x, JSON configs ~10x; a bomb compresses 1000x
RATIO_FLOOR_BYTES = 16 << 20  # ratios are only judged for members (and archives) inflating beyond 16 MiB
MAX_MEMBERS = 1_000_000
MAX_JSON_BYTES = 256 << 20  # a config / metadata member edgeconv reads itself

_HINT = "do not load this file; it is damaged or was crafted to harm the machine reading it"


def member_escapes(name: str) -> bool:
    """True for a zip member name that points outside the archive when extracted."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in PurePosixPath(normalised).parts


def check_zip(path: Path) -> list[zipfile.ZipInfo]:
    """The archive's members, after the escape / symlink / bomb checks. Damaged archive: exit 3."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise InvalidInputError(f"{path} starts like a zip archive but is damaged ({e})",
                                "the file is truncated or corrupt; export it again") from e
    if len(infos) > MAX_MEMBERS:
        raise SafetyError(f"{path} is a zip archive with {len(infos)} entries (at most {MAX_MEMBERS} are read)", _HINT)
    total = 0
    for info in infos:
        if member_escapes(info.filename):
            raise SafetyError(f"{path} contains an entry escaping the archive: {info.filename!r}", _HINT)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise SafetyError(f"{path} contains a symbolic link entry: {info.filename!r}", _HINT)
        total += info.file_size
        if (info.compress_type != zipfile.ZIP_STORED and info.file_size > RATIO_FLOOR_BYTES
                and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
            raise SafetyError(
                f"{path} looks like a zip bomb: entry {info.filename!r} inflates from {info.compress_size} to "
                f"{info.file_size} bytes (more than {MAX_RATIO}x)", _HINT)
    if total > MAX_UNZIPPED_BYTES:
        raise SafetyError(f"{path} would inflate to {total} bytes (more than {MAX_UNZIPPED_BYTES >> 30} GiB)", _HINT)
    size = path.stat().st_size
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(size, 1):
        raise SafetyError(f"{path} looks like a zip bomb: {size} bytes inflate to {total} (more than {MAX_RATIO}x)", _HINT)
    return infos


def read_member(zf: zipfile.ZipFile, name: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """A member's bytes, refusing (exit 7) one that is larger than `limit` once inflated."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise SafetyError(f"{zf.filename}: entry {name!r} is {info.file_size} bytes, more than the {limit} read", _HINT)
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SafetyError(f"{zf.filename}: entry {name!r} inflates beyond its declared size", _HINT)
    return data


def inside(base: Path, path: Path) -> bool:
    """True when `path` resolves to `base` or below it (`base` already resolved)."""
    resolved = path.resolve()
    return resolved == base or base in resolved.parents


def check_tree(root: Path) -> None:
    """Refuse (exit 7) a model directory holding a symlink that points outside it (or loops)."""
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            if not entry.is_symlink():
                continue
            try:
                ok = inside(base, entry)
            except (OSError, RuntimeError):  # a symlink loop
                ok = False
            if not ok:
                rel = entry.relative_to(base)
                raise SafetyError(
                    f"{root}: {rel} is a link to {os.readlink(entry)}, outside the model's folder",
                    "copy the files into the model's folder instead of linking them; do not load models from "
                    "untrusted sources",
                )


def hdf5_external_references(h5: Any) -> list[str]:
    """Every place an open h5py File reaches outside itself: external links, datasets stored in external raw files
    (HDF5 reads their bytes from any path, e.g. a weight backed by a file in /etc), virtual datasets mapping other files.
    Walks the hard-link tree once (cycles cut); reads no data."""
    import h5py

    found: list[str] = []
    seen: set[int] = set()
    stack = [("", h5)]
    while stack:
        prefix, group = stack.pop()
        for name in group:
            path = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                found.append(f"{path} (external link to {link.filename}:{link.path})")
                continue
            if isinstance(link, h5py.SoftLink):
                continue  # a path inside this file: its target is visited where it lives
            obj = group.get(name)
            if obj is None:
                continue
            address = h5py.h5o.get_info(obj.id).addr
            if address in seen:
                continue
            seen.add(address)
            if isinstance(obj, h5py.Group):
                stack.append((path, obj))
            elif isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                for i in range(plist.get_external_count()):
                    found.append(f"{path} (stored in external file {plist.get_external(i)[0].decode(errors='replace')})")
                if obj.is_virtual:
                    files = sorted({s.file_name for s in obj.virtual_sources() if s.file_name != "."})
                    found.extend(f"{path} (virtual dataset mapping {f})" for f in files)
    return found


def check_hdf5(h5: Any, where: Path) -> None:
    """Refuse (exit 7) an HDF5 file (a Keras .h5, or the weights inside a .keras) reaching files outside itself."""
    found = hdf5_external_references(h5)
    if found:
        raise SafetyError(
            f"{where} reads data from outside the file: {'; '.join(found[:5])}"
            + (f"; and {len(found) - 5} more" if len(found) > 5 else ""),
            "save the model again with its weights inside the file; do not load models from untrusted sources",
            details={"external": found},
        )
