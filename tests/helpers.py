"""In-process conversion helper for tests (the CLI contract itself is tested through subprocesses in tests/cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.formats import detect
from edgeconv.pipeline import build_plan, run
from edgeconv.targets import resolve


def convert(source: Path, targets: list[str], out: Path, **options: Any) -> dict[str, Any]:
    """Run the real pipeline (export → normalise → quantize → compile → validate → write); return the manifest JSON."""
    opts = ConvertOptions(**options)
    plan = build_plan(detect(source), [resolve(t) for t in targets], opts)
    return run(plan, out, force=True).to_json()


def target_record(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in manifest["targets"] if t["target"] == name)


def model_path(manifest: dict[str, Any], out: Path, name: str, fmt: str | None = None) -> Path:
    record = target_record(manifest, name)
    arts = [a for a in record["artifacts"] if a["role"] == "model" and (fmt is None or a["format"] == fmt)]
    return out / arts[0]["path"]
