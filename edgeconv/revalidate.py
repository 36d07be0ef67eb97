"""Validate an existing artifact against its source model, outside a conversion (used by `edgeconv validate`).

The same validation stage as `convert` runs: the source in its framework and the artifact in the target profile's
runtime on the same samples, then the profile's gate. The profile comes from --target, else from the manifest beside
the artifact, else from the precision read from the artifact (precision.py), else the format's float profile.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.errors import AccuracyGateError, InvalidInputError
from edgeconv.formats import Format, detect
from edgeconv.manifest import _clean, sha256_of, shipped_size

USER_GUIDE = """\
`edgeconv validate SOURCE ARTIFACT` runs the source model in its framework and the artifact on the target profile's
runtime, on the same samples, and applies the profile's accuracy gate. It prints the metrics it measured whether the
gate passes or not; when it fails, the table comes first, then the error line, and the exit code is 5 (with --json the
metrics are in `error.details.validation`).

The profile comes from --target, else from the manifest.json beside the artifact (written by `edgeconv convert`). A
bare artifact (no manifest) gets the built-in profile of the precision read from the file, named on one line with the
reason: ONNX QuantizeLinear/DequantizeLinear nodes → onnx-int8-qdq (onnx-int16-qdq when a zero point is 16-bit),
QLinear* nodes → cpu-int8-qop, DynamicQuantizeLinear / MatMulInteger → onnx-dynamic, float16 tensors → onnx-fp16;
TFLite int16 / int8 activations → tflite-int16x8 / tflite-int8, float16 or int8 constants with float activations →
tflite-fp16 / tflite-dynamic; OpenVINO IR FakeQuantize layers → openvino-int8, int8/int4 weight constants →
openvino-w8, float16 constants → openvino-fp16; a QNN context model through the compiled graph beside it
(`<stem>.int8.onnx` → hexagon-int8). Where the file says nothing, the format's float profile applies, with a warning.

The size printed is the shipped size: the model plus the files it loads (a QNN context binary, external data, an
OpenVINO .bin), the figure convert's and batch's tables and the manifest's `shipped_bytes` show."""


def _recorded_source_hash(manifest: Path) -> str | None:
    import json

    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("source", {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def validate_artifact(source: Path, artifact: Path, options: ConvertOptions, *, target: str | None = None,
                      samples: int | None = None, reporter: Any = None) -> dict[str, Any]:
    """Returns {"source", "artifact", "target", "validation"}; raises AccuracyGateError (exit 5) when the gate fails."""
    from edgeconv.benchmark import _profile_for, artifact_context
    from edgeconv.context import QuantizeResult, StepContext
    from edgeconv.pipeline import resolve_shapes
    from edgeconv.progress import NullReporter
    from edgeconv.runtimes import runtime_named
    from edgeconv.sources import open_source
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import apply_overrides
    from edgeconv.validation_stage import validate_target

    actx = artifact_context(artifact, target)
    inferred = None
    if target or actx.target:
        profile = resolve(target) if target else _profile_for(actx)
    else:  # a bare artifact: the gate of the precision the file says it has
        from edgeconv.precision import infer_precision, profile_for_precision

        inferred = infer_precision(actx.artifact)
        profile = profile_for_precision(actx.artifact.format, inferred) or _profile_for(actx)
    if samples is not None:
        options = replace(options, overrides=(*options.overrides, f"validate.samples={samples}"))
    profile = apply_overrides(profile, list(options.overrides))
    runtime_named(profile.validate.runtime)  # unknown runtime: exit 2 before loading anything
    src = open_source(detect(source), options)
    warnings: list[str] = []
    if inferred is not None and profile.quantize.precision != inferred.precision:
        warnings.append(f"no --target given, no manifest beside {artifact} and its precision could not be inferred "
                        f"({inferred.reason}): applying the gate of {profile.name}")
    if actx.artifact.format == Format.ONNX:
        have, want = [s.name for s in actx.inputs], [s.name for s in src.inputs]
        if sorted(have) != sorted(want):
            raise InvalidInputError(f"{artifact} takes input(s) {', '.join(have)}, but {source} takes {', '.join(want)}",
                                    "pass the source model the artifact was converted from")
    if actx.manifest is not None:
        recorded = _recorded_source_hash(actx.manifest)
        if recorded and src.artifact.path.is_file() and sha256_of(src.artifact.path) != recorded:
            warnings.append(f"{actx.manifest} records another source file (sha256 {recorded[:12]}…) than {source}")
    # dynamic source dims the user left open: take them from the artifact when it fixed them
    fixed = {s.name: tuple(d for d in s.shape if isinstance(d, int)) for s in actx.inputs if s.is_static}
    fill = {s.name: fixed[s.name] for s in src.inputs if not s.is_static and s.name in fixed
            and s.name not in options.input_shapes and len(fixed[s.name]) == len(s.shape)}
    if fill:
        options = replace(options, input_shapes={**fill, **options.input_shapes})
    src = resolve_shapes(src, profile, options)
    result: dict[str, Any] = {"source": str(source), "artifact": str(actx.artifact.path), "target": profile.name,
                              "manifest": str(actx.manifest) if actx.manifest else None}
    if inferred is not None:
        result["inferred"] = {**inferred.to_json(), "profile": profile.name}
    result["shipped_bytes"] = shipped_size(actx.artifact)
    with tempfile.TemporaryDirectory(prefix="edgeconv-validate-") as tmp:
        recorded_quantize = actx.notes.get("quantize")  # what the conversion's quantize step did (its fallback search)
        ctx = StepContext(Path(tmp), profile, options, src, reporter or NullReporter(), notes=dict(actx.notes),
                          quantized=QuantizeResult.from_json(recorded_quantize) if isinstance(recorded_quantize, dict)
                          else None)
        try:
            record = validate_target(actx.artifact, ctx, {})
        except AccuracyGateError as e:  # the measured metrics travel with the error: the CLI prints them, then exit 5
            e.details = _clean({**result, **e.details, "warnings": warnings + ctx.warnings})
            raise
        warnings += ctx.warnings
    return {**result, "validation": _clean(asdict(record)), "warnings": warnings}
