"""The validate stage: run the source in its framework and the artifact in the target's runtime on the same samples,
compute metrics and apply the profile's gate. Runtimes that cannot execute here (Core ML on Linux) fall back to their
structural check, and the record says which check ran."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from edgeconv.context import StepContext
from edgeconv.errors import AccuracyGateError, EdgeconvError, InvalidInputError, MissingBackendError, first_line
from edgeconv.formats import Artifact
from edgeconv.manifest import ValidationRecord
from edgeconv.quantizers.calibration import RANDOM, SampleSet, open_samples, preprocess_spec
from edgeconv.runtimes import runtime_for_source, runtime_named
from edgeconv.validation import check_gate, check_source_outputs, compare


def validation_samples(ctx: StepContext) -> SampleSet:
    options = ctx.options
    spec = options.eval or (options.calib if options.calib != RANDOM else None)
    return open_samples(spec, ctx.source.inputs, ctx.profile.validate.samples, seed=options.seed + 1, purpose="validation",
                        preprocess=preprocess_spec(ctx))


def source_outputs(samples: SampleSet, ctx: StepContext, cache: dict[str, Any]) -> list[list[Any]]:
    key = json.dumps([samples.describe(), [asdict(s) for s in ctx.source.inputs]], default=str, sort_keys=True)
    if key not in cache:
        session = runtime_for_source(ctx.source.artifact.format)().load(ctx.source.artifact, ctx)
        outputs = []
        for i, feeds in enumerate(samples):
            try:
                out = session.run(feeds)
            except EdgeconvError:
                raise
            except Exception as e:  # e.g. token ids past the vocabulary (Gather out of range): the sample, not a bug
                raise InvalidInputError(f"the source model cannot run validation sample {i}: {first_line(e)}",
                                        "check the samples' values against the model (e.g. token ids below the "
                                        "vocabulary size)") from e
            check_source_outputs(out, i)
            outputs.append(out)
        cache[key] = outputs
    return cache[key]


def validate_target(artifact: Artifact, ctx: StepContext, cache: dict[str, Any]) -> ValidationRecord:
    profile = ctx.profile
    runtime_cls = runtime_named(profile.validate.runtime)
    note = ""
    if runtime_cls.formats and artifact.format not in runtime_cls.formats:
        # the compile step was skipped here (a TensorRT engine without a GPU): validate the model that was written
        note = f"{runtime_cls.name} cannot run {artifact.format.value}; validated {artifact.path.name} on its own runtime"
        runtime_cls = runtime_for_source(artifact.format)
    if not runtime_cls.available():
        raise MissingBackendError(f"validating {profile.name} needs the {runtime_cls.name} runtime, which is not installed",
                                  f"pip install 'edgeconv[{runtime_cls.extra}]'")
    runtime = runtime_cls()
    gate = asdict(profile.validate.gate)
    why_not = runtime_cls.can_execute_here()
    if why_not is not None:
        check = runtime.check_structure(artifact, ctx)
        record = ValidationRecord(runtime_cls.name, "structural", check.passed, None, gate, check.problems,
                                  {}, dict(check.checks), why_not)
        if not check.passed:
            raise AccuracyGateError(f"{profile.name}: structural validation failed: {'; '.join(check.problems)}",
                                    "see the listed problems", details={"validation": asdict(record)})
        return record
    samples = validation_samples(ctx)
    references = source_outputs(samples, ctx, cache)
    session = runtime.load(artifact, ctx)
    actuals = []
    with ctx.reporter.task(f"validating {profile.name}", total=len(samples)) as task:
        for feeds in samples:
            actuals.append(session.run(feeds))
            task.advance()
    metrics = compare(ctx.source.output_names or session.output_names, references, actuals)
    result = check_gate(metrics, profile.validate.gate)
    record = ValidationRecord(runtime_cls.name, "numerical", result.passed, metrics.to_json(), gate, result.failures,
                              samples.describe(), note=note)
    if samples.kind == "generated":
        ctx.warn("validated on generated random inputs (no --eval/--calib data given); pass --eval DIR for real numbers")
    if not result.passed:
        raise AccuracyGateError(
            f"{profile.name} failed its accuracy gate: {'; '.join(result.failures)}",
            "pass real --calib data, pick a higher-precision profile, or relax the gate with --set validate.gate.<key>=...",
            details={"target": profile.name, "validation": asdict(record)},
        )
    return record
