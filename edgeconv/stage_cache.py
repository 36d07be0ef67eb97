"""Stage reuse across runs: an on-disk cache of what the export, normalise, quantize and compile steps wrote.

A step's key is a sha256 over everything that decides its output:
- the step: kind, name and the class doing it (converter or quantizer);
- its input by content: the artifact's file or folder and its companions; the source model's file name and I/O specs;
- the settings it reads (`step_settings`): normalise, the opset and the profile's [normalise] section (static input
  shapes are in the source specs);
  quantize, the whole profile ([validate] included: the mixed-precision fallback searches for the gate on the
  evaluation samples) and every option, calibration / evaluation data by content; a converter, the profile without
  [validate] and every option and data set, unless it names the fewer keys it reads (`Converter.cache_profile_keys`,
  `cache_option_keys`);
- the tools: the installed backends' versions, edgeconv's version, a hash of edgeconv's own source files, Python.
Over-keying costs a miss, under-keying would hand out a wrong model: when in doubt a setting is in the key. Steps whose
output depends on more than that are not cached: converters with `cacheable = False` (the TensorRT engine build needs
the GPU it runs on) and exports of PyTorch factories and pickles (their code lives outside the hashed file).

Entries live in CACHE_ROOT/stages/<key>/ (entry.json + files/). A hit copies the files into the step's fresh work
folder, checking their sha256 on the way, and replays what the step added to the target's notes and warnings. Writes
are atomic (a temp folder in stages/ renamed into place; a writer that loses the race drops its copy); a damaged entry
is a miss (and is removed); a cache root that cannot be written only stops storing. After a store, least recently used
entries are removed until the cache is under EDGECONV_STAGE_CACHE_MB (default 2048). Off: `--no-cache` or
EDGECONV_NO_CACHE=1. Validation is never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeconv import __version__
from edgeconv.context import QuantizeResult
from edgeconv.deps import installed_versions
from edgeconv.formats import TORCH_FACTORY, TORCH_PICKLE, Artifact, Format, IoMap
from edgeconv.manifest import json_value, sha256_of

if TYPE_CHECKING:
    from edgeconv.context import ConvertOptions, StepContext

log = logging.getLogger(__name__)
SCHEMA = 1
STAGES_DIR = "stages"
ENTRY_NAME = "entry.json"
FILES_DIR = "files"
DEFAULT_MAX_MB = 2048
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STALE_S = 24 * 3600  # temp / trash folders older than this were left by killed processes
# Options that never change what a step writes: where the work goes, this cache, and the --set overrides (already
# applied to the profile, which is hashed).
IGNORED_OPTIONS = frozenset({"keep_work", "no_cache", "overrides"})
DATA_OPTIONS = ("calib", "eval", "weights")
UNCACHED_SOURCES = frozenset({TORCH_FACTORY, TORCH_PICKLE})


def cache_root() -> Path:
    """edgeconv's cache folder: $EDGECONV_CACHE_DIR, else $XDG_CACHE_HOME/edgeconv, else ~/.cache/edgeconv."""
    root = os.environ.get("EDGECONV_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgeconv")
    return Path(root)


def disabled_by_env() -> bool:
    return os.environ.get("EDGECONV_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def size_limit() -> int:
    """EDGECONV_STAGE_CACHE_MB in bytes (default 2 GiB; 0 stores nothing)."""
    text = os.environ.get("EDGECONV_STAGE_CACHE_MB", "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_MAX_MB
    except ValueError:
        megabytes = math.nan
    if not math.isfinite(megabytes) or megabytes < 0:  # nan / inf / -1 / "lots": a usage error, not a silent default
        from edgeconv.errors import UsageError

        raise UsageError(f"EDGECONV_STAGE_CACHE_MB={text!r} is not a size in megabytes",
                         f"set it to a number >= 0 (0 stores nothing; default {DEFAULT_MAX_MB}), or unset it")
    return int(megabytes * 1024 * 1024)


@lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over edgeconv's own .py / .toml files: a changed converter never reuses what its old code wrote."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".toml") and p.is_file()):
        digest.update(str(file.relative_to(package)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, Any]:
    return {"edgeconv": __version__, "code": code_digest(), "python": sys.version.split()[0],
            "machine": f"{sys.platform}-{platform.machine()}", "backends": installed_versions()}


def cache_key(payload: Any) -> str:
    """The one cache key: sha256 over `payload` as canonical JSON (keys sorted; paths and other objects as str). The
    stage cache, the pipeline's reuse of a step between the targets of one run and batch's skipping of unchanged
    pairs all key with it; edgeconv's own code enters a payload as `tool_versions()` (the code digest, not only the
    version string). TypeError / ValueError when the payload cannot be written as JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def step_settings(kind: str, plugin: type | None, ctx: "StepContext",
                  data_digest: Callable[[Path], str]) -> dict[str, Any]:
    """The settings a step's output depends on (see the module docstring)."""
    profile = dataclasses.asdict(ctx.profile)
    profile.pop("source_file")  # where the profile was read ("--set" once overridden); its content is what counts
    if kind == "normalise":  # normalise(model, opset, static input shapes, the profile's [normalise] options if any)
        return {"opset": profile.get("opset"), "normalise": profile.get("normalise")}
    profile_keys = option_keys = None
    if kind != "quantize" and plugin is not None:
        profile_keys = getattr(plugin, "cache_profile_keys", None)
        option_keys = getattr(plugin, "cache_option_keys", None)
        if profile_keys is None:
            profile.pop("validate")  # a converter builds; how the result is then checked does not change it
    if profile_keys is not None:
        profile = {k: profile[k] for k in profile_keys}
    options = {k: v for k, v in dataclasses.asdict(ctx.options).items()
               if k not in IGNORED_OPTIONS and (option_keys is None or k in option_keys)}
    for key in DATA_OPTIONS:
        value = options.get(key)
        if value is not None and value != "random":
            options[key] = {"path": str(value), "sha256": data_digest(Path(value))}
    return {"profile": profile, "options": options}


@dataclass(frozen=True)
class CachedStep:
    """A hit: the artifact restored into the step's work folder, and what the step had added to notes / warnings."""

    artifact: Artifact
    notes: dict[str, Any]
    warnings: list[str]
    quantized: QuantizeResult | None = None  # a quantize step's typed result (context.QuantizeResult)


@dataclass(frozen=True)
class ContextSnapshot:
    """The target's notes and warnings before a step, to tell what the step added (stored with its output)."""

    notes: dict[str, str]
    warnings: int

    @staticmethod
    def of(ctx: "StepContext") -> "ContextSnapshot":
        return ContextSnapshot({k: _fingerprint(v) for k, v in ctx.notes.items()}, len(ctx.warnings))

    def delta(self, ctx: "StepContext") -> tuple[dict[str, Any], list[str]]:
        notes = {k: json_value(v) for k, v in ctx.notes.items() if self.notes.get(k) != _fingerprint(v)}
        return notes, list(ctx.warnings[self.warnings:])


def _fingerprint(value: Any) -> str:
    return json.dumps(json_value(value), sort_keys=True, default=str)


class StageCache:
    """CACHE_ROOT/stages: `key` a step, `restore` a hit into a work folder, `store` a step's output."""

    def __init__(self, root: Path, limit: int):
        self.root = root
        self.limit = limit
        self._data: dict[str, str] = {}  # digests of data folders / files, once per run

    @classmethod
    def for_run(cls, options: "ConvertOptions") -> "StageCache | None":
        """The cache a run uses, or None (`--no-cache`, EDGECONV_NO_CACHE=1): then no cache code runs at all."""
        if options.no_cache or disabled_by_env():
            return None
        return cls(cache_root() / STAGES_DIR, size_limit())

    # -------------------------------------------------------------------------------------------------------- key
    def key(self, kind: str, name: str, plugin: type | None, artifact: Artifact, ctx: "StepContext") -> str | None:
        """The step's cache key, or None when the step is not cacheable (or its input cannot be read)."""
        if plugin is not None and not getattr(plugin, "cacheable", True):
            return None
        source = ctx.source
        # an export, or a direct edge from the source itself (torch → coreml / executorch), of a PyTorch factory or pickle
        if (kind == "export" or artifact.path == source.artifact.path) and source.artifact.variant in UNCACHED_SOURCES:
            log.debug("stage cache: %s exports a PyTorch %s (code outside the file): not cached", name,
                      source.artifact.variant)
            return None
        if (kind == "export" or artifact.path == source.artifact.path) and ctx.options.custom_objects:
            log.debug("stage cache: %s exports a model whose classes are in --custom-objects modules: not cached", name)
            return None
        try:
            payload = {
                "schema": SCHEMA,
                "step": [kind, name, f"{plugin.__module__}.{plugin.__qualname__}" if plugin is not None else None],
                "input": _artifact_digest(artifact),
                "source": {"name": source.artifact.path.name, "format": source.artifact.format.value,
                           "variant": source.artifact.variant, "description": source.description,
                           "inputs": [dataclasses.asdict(s) for s in source.inputs],
                           "outputs": list(source.output_names)},
                "settings": step_settings(kind, plugin, ctx, self._data_digest),
                "tools": tool_versions(),
            }
            return cache_key(payload)
        except (OSError, TypeError, ValueError) as e:
            log.debug("stage cache: no key for %s (%s): not cached", name, e)
            return None

    def _data_digest(self, path: Path) -> str:
        if str(path) not in self._data:
            self._data[str(path)] = sha256_of(path) if path.exists() else "<missing>"
        return self._data[str(path)]

    # ---------------------------------------------------------------------------------------------------- restore
    def restore(self, key: str, work_dir: Path) -> CachedStep | None:
        """Copy a stored output into `work_dir` (sha256 checked). A missing entry is a miss; a damaged one is a miss
        that removes it, and leaves `work_dir` empty for the real step."""
        entry = self.root / key
        if not (entry / ENTRY_NAME).is_file():
            return None
        try:
            meta = json.loads((entry / ENTRY_NAME).read_text(encoding="utf-8"))
            if meta.get("schema") != SCHEMA:
                raise ValueError(f"schema {meta.get('schema')!r}")
            for folder in meta["dirs"]:
                (work_dir / _relative(folder)).mkdir(parents=True, exist_ok=True)
            for rel, info in meta["files"].items():
                dest = work_dir / _relative(rel)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if _copy_hashing(entry / FILES_DIR / _relative(rel), dest) != info["sha256"]:
                    raise ValueError(f"{rel}: sha256 differs from the stored one")
            artifact = Artifact(work_dir / _relative(meta["path"]), Format(meta["format"]), meta["variant"],
                                tuple(work_dir / _relative(c) for c in meta["companions"]),
                                IoMap.from_json(meta["io"]) if meta.get("io") is not None else None)
            quantized = QuantizeResult.from_json(meta["quantized"]) if meta.get("quantized") is not None else None
            hit = CachedStep(artifact, dict(meta["notes"]), [str(w) for w in meta["warnings"]], quantized)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.debug("stage cache entry %s is damaged (%s): a miss; removing it", key[:12], e)
            _empty(work_dir)
            self._discard(entry)
            return None
        try:
            os.utime(entry / ENTRY_NAME)  # least recently used goes first
        except OSError:
            pass
        return hit

    # ------------------------------------------------------------------------------------------------------ store
    def store(self, key: str, artifact: Artifact, work_dir: Path, notes: dict[str, Any], warnings: list[str],
              step: str = "", quantized: QuantizeResult | None = None) -> None:
        """Keep a step's output under `key` (`step` names it in entry.json, for people looking into the cache) with
        what it added to notes / warnings and, for a quantize step, its typed result. Never fails the run: what cannot
        be stored is left out (debug log)."""
        final = self.root / key
        tmp: Path | None = None
        try:
            files, dirs = _artifact_files(artifact, work_dir)
            total = sum((work_dir / rel).stat().st_size for rel in files)
            if total > self.limit:
                log.debug("stage cache: %s (%d bytes) is over the cache limit (%d bytes): not stored",
                          artifact.path.name, total, self.limit)
                return
            if final.exists():
                return
            meta: dict[str, Any] = {
                "schema": SCHEMA, "step": step, "format": artifact.format.value, "variant": artifact.variant,
                "io": artifact.io.to_json() if artifact.io else None, "path": _inside(artifact.path, work_dir),
                "companions": [_inside(c, work_dir) for c in artifact.companions], "dirs": dirs, "files": {},
                "bytes": total, "notes": notes, "warnings": warnings,
                "quantized": quantized.to_json() if quantized is not None else None, "edgeconv": __version__}
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=self.root))
            for rel in files:
                dest = tmp / FILES_DIR / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                meta["files"][rel] = {"sha256": _copy_hashing(work_dir / rel, dest), "bytes": dest.stat().st_size}
            (tmp / ENTRY_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            os.rename(tmp, final)  # an existing entry (a concurrent writer won) makes this fail: drop our copy
            tmp = None
        except (OSError, TypeError, ValueError) as e:
            log.debug("stage cache: %s not stored (%s)", artifact.path.name, e)
            return
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self.evict()

    # ------------------------------------------------------------------------------------------------------ evict
    def evict(self) -> None:
        """Remove least recently used entries until the cache is under its limit; also leftovers of killed runs."""
        entries: list[tuple[float, int, Path]] = []
        now = time.time()
        try:
            children = list(self.root.iterdir())
        except OSError:
            return
        for child in children:
            try:
                if child.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                    if now - child.stat().st_mtime > STALE_S:
                        shutil.rmtree(child, ignore_errors=True)
                    continue
                used = (child / ENTRY_NAME).stat().st_mtime
            except OSError:
                used = 0.0  # no entry.json: damaged, goes first
            entries.append((used, _tree_bytes(child), child))
        total = sum(size for _, size, _ in entries)
        for _, size, child in sorted(entries, key=lambda e: e[0]):
            if total <= self.limit:
                break
            self._discard(child)
            total -= size

    def _discard(self, entry: Path) -> None:
        """Remove an entry: renamed away first, so no reader ever sees half of it."""
        trash = self.root / f"{TRASH_PREFIX}{os.getpid()}-{entry.name}"
        try:
            os.rename(entry, trash)
        except OSError:
            return  # gone already (another run evicted it), or a read-only cache
        shutil.rmtree(trash, ignore_errors=True)


def _artifact_digest(artifact: Artifact) -> dict[str, Any]:
    base = artifact.path.parent
    return {"format": artifact.format.value, "variant": artifact.variant,
            "io": artifact.io.to_json() if artifact.io else None,
            "name": artifact.path.name, "sha256": sha256_of(artifact.path),
            "companions": [[os.path.relpath(c, base), sha256_of(c)] for c in artifact.companions]}


def _inside(path: Path, work_dir: Path) -> str:
    """`path` relative to the step's work folder; ValueError when the step returned something outside it."""
    rel = Path(os.path.relpath(path, work_dir))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{path} is outside the step's work folder")
    return rel.as_posix()


def _relative(text: str) -> Path:
    """A relative path read back from entry.json: never absolute, never `..` (it must stay in the work folder)."""
    rel = Path(text)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"bad path {text!r} in the entry")
    return rel


def _artifact_files(artifact: Artifact, work_dir: Path) -> tuple[list[str], list[str]]:
    """Every file (and folder) of the artifact and its companions, relative to the work folder."""
    files: set[str] = set()
    dirs: set[str] = set()
    for path in artifact.all_paths():
        if path.is_symlink():
            raise ValueError(f"{path} is a symlink")
        if path.is_dir():
            dirs.add(_inside(path, work_dir))
            for item in path.rglob("*"):
                if item.is_symlink():
                    raise ValueError(f"{item} is a symlink")
                (dirs if item.is_dir() else files).add(_inside(item, work_dir))
        elif path.is_file():
            files.add(_inside(path, work_dir))
        else:
            raise ValueError(f"{path} does not exist")
    return sorted(files), sorted(dirs)


def _copy_hashing(src: Path, dest: Path) -> str:
    digest = hashlib.sha256()
    with src.open("rb") as fin, dest.open("wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _empty(folder: Path) -> None:
    for child in list(folder.iterdir()) if folder.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
