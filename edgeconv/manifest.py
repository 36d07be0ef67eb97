"""The manifest written beside the artifacts (manifest.json) and printed by --json: what went in, what came out, with
hashes, the validation metrics, settings and tool versions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeconv import __version__

MANIFEST_NAME = "manifest.json"


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names + contents, in sorted order)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            digest.update(b"\0")
            digest.update(bytes.fromhex(sha256_of(file)))
        return digest.hexdigest()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def shipped_files(artifact: Any) -> list[Path]:
    """The files a device needs to run `artifact` (an Artifact): the model file (or package folder) and the companions
    it loads — external data, the QNN context binary an EPContext model names, an OpenVINO IR's weights .bin. Not
    shipped: the compiled QDQ graph beside a QNN context model (`<stem>.int8.onnx`, an ONNX model of its own, the DLC's
    input) and a TensorRT engine's timing cache (a build aid)."""
    from edgeconv.formats import Format

    if artifact.format == Format.TENSORRT_ENGINE:
        return [artifact.path]
    files = [artifact.path, *(c for c in artifact.companions if c.suffix != ".onnx")]
    if artifact.format == Format.ONNX and not artifact.companions and artifact.path.is_file():
        files += _external_data(artifact.path)  # a bare .onnx: its external data files, as the model names them
    return list(dict.fromkeys(files))


def _external_data(model_path: Path) -> list[Path]:
    import onnx
    from onnx.external_data_helper import uses_external_data

    from edgeconv.sources.onnx_source import model_tensors

    try:
        model = onnx.load_model(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not readable as ONNX: nothing beside it is counted
        return []
    found = []
    for tensor, _ in model_tensors(model):
        if uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            path = model_path.parent / location
            if location and ".." not in Path(location).parts and path.is_file():
                found.append(path)
    return found


def shipped_size(artifact: Any) -> int:
    """The size edgeconv reports for an artifact everywhere (convert and batch tables, manifest `shipped_bytes`,
    validate, the route matrix): the bytes of `shipped_files`."""
    return sum(size_of(p) for p in shipped_files(artifact) if p.exists())


def target_shipped_bytes(target: dict[str, Any]) -> int | None:
    """A manifest target's size: its primary artifact's `shipped_bytes` (the first model record; the DLC beside a QNN
    context is an alternative deliverable, not an addition). Manifests written before `shipped_bytes`: the model's
    bytes plus the companions recorded after it."""
    arts = target.get("artifacts") or []
    for i, art in enumerate(arts):
        if art.get("role") != "model":
            continue
        if art.get("shipped_bytes") is not None:
            return int(art["shipped_bytes"])
        if art.get("bytes") is None:
            return None
        total = int(art["bytes"])
        for comp in arts[i + 1:]:
            if comp.get("role") != "companion":
                break
            if comp.get("format") == art.get("format"):
                total += comp.get("bytes") or 0
        return total
    return None


@dataclass(frozen=True)
class ArtifactRecord:
    path: str  # relative to the output directory
    format: str
    sha256: str | None
    bytes: int | None
    role: str = "model"  # model | companion | not-built
    note: str = ""
    shipped_bytes: int | None = None  # model records: this file plus the companions it needs (see shipped_size)

    @staticmethod
    def of(path: Path, root: Path, fmt: str, role: str = "model", shipped: int | None = None) -> "ArtifactRecord":
        return ArtifactRecord(str(path.relative_to(root)), fmt, sha256_of(path), size_of(path), role,
                              shipped_bytes=shipped)


@dataclass(frozen=True)
class ValidationRecord:
    runtime: str
    kind: str  # "numerical" | "structural"
    passed: bool
    metrics: dict[str, Any] | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    failures: tuple[str, ...] = ()
    samples: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    task: dict[str, Any] | None = None  # task metric of the source and the artifact (task_metrics.measure), or None
    stand_in: str = ""  # the target's own artifact was not built here: `runtime` validated its input ("engine not built")


@dataclass(frozen=True)
class StepRecord:
    kind: str
    name: str
    seconds: float
    reused: bool = False  # not run: its output came from an identical step (this run's, or the stage cache)
    cached: bool = False  # that output came from the stage cache of an earlier run (stage_cache.py)


@dataclass
class TargetRecord:
    target: str
    profile: dict[str, Any]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    validation: ValidationRecord | None = None
    steps: list[StepRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None  # --keep-going: why this target failed ({code, kind, message, hint}); no artifacts


@dataclass(frozen=True)
class SourceRecord:
    path: str
    format: str
    variant: str
    sha256: str | None
    bytes: int | None
    inputs: list[dict[str, Any]]


@dataclass
class Manifest:
    source: SourceRecord
    targets: list[TargetRecord]
    versions: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    edgeconv: str = __version__

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class _Value:
    value: Any


def json_value(value: Any) -> Any:
    """`value` as the manifest writes it: dataclasses as dicts, paths as strings, enums as values, NaN/Inf as null."""
    return _clean(asdict(_Value(value)))["value"]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value
    return value
