"""The validate stage: run the source in its framework and the artifact in the target's runtime on the same samples,
compute metrics and apply the profile's gate. Runtimes that cannot execute here (Core ML on Linux) fall back to their
structural check, and the record says which check ran."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from edgeconv.context import StepContext
from edgeconv.errors import AccuracyGateError, EdgeconvError, InvalidInputError, MissingBackendError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.manifest import ValidationRecord
from edgeconv.quantizers.calibration import RANDOM, SampleSet, open_samples, preprocess_spec, warn_assumed_preprocess
from edgeconv.runtimes import Runtime, runtime_for_source, runtime_named
from edgeconv.task_metrics import check_task_gate
from edgeconv.validation import check_gate, check_source_outputs, compare


def validation_samples(ctx: StepContext) -> SampleSet:
    """--eval, else --calib, else generated. Labelled data (or a --metric) runs up to validate.task_samples samples,
    so that a task metric means something; else validate.samples."""
    from edgeconv.eval_data import has_labels

    options = ctx.options
    spec = options.eval or (options.calib if options.calib != RANDOM else None)
    limit = ctx.profile.validate.samples
    if spec is not None and (options.metric or has_labels(spec)):
        limit = max(limit, ctx.profile.validate.task_samples)
    samples = open_samples(spec, ctx.source.inputs, limit, seed=options.seed + 1, purpose="validation",
                           preprocess=preprocess_spec(ctx))
    warn_assumed_preprocess(samples, ctx)
    return samples


def reuses_calibration(options: Any) -> bool:
    """The validation samples are (some of) the calibration samples: --eval absent or the same folder as --calib."""
    from pathlib import Path

    if options.calib in (None, RANDOM):
        return False
    if not options.eval:
        return True
    try:
        return Path(options.eval).resolve() == Path(options.calib).resolve()
    except OSError:
        return False


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


def validation_runtime(fmt: Format, profile: Any) -> tuple[type[Runtime], str]:
    """The runtime that validates an artifact of format `fmt` for `profile`, and the stand-in label ("" when it is the
    profile's own runtime). The compile step was skipped here (a TensorRT engine without a GPU): the model that was
    written is validated on its own runtime, and progress lines and tables say so ("onnxruntime (engine not built)")."""
    runtime_cls = runtime_named(profile.validate.runtime)
    if runtime_cls.formats and fmt not in runtime_cls.formats:
        return runtime_for_source(fmt), runtime_cls.stand_in_label or f"{runtime_cls.name} cannot run {fmt.value}"
    return runtime_cls, ""


def validated_on(runtime: str, stand_in: str = "") -> str:
    """'onnxruntime', or 'onnxruntime (engine not built)' for a stand-in: the text of progress lines and result rows."""
    return f"{runtime} ({stand_in})" if stand_in else runtime


def planned_validation(profile: Any) -> str:
    """Where `profile`'s validation will run on this machine, before anything is built (plan, stage lines)."""
    runtime_cls = runtime_named(profile.validate.runtime)
    if runtime_cls.fallback_here() and runtime_cls.formats and profile.primary_format in runtime_cls.formats:
        return validated_on(runtime_for_source(Format.ONNX).name, runtime_cls.stand_in_label)
    return runtime_cls.name


def validate_target(artifact: Artifact, ctx: StepContext, cache: dict[str, Any]) -> ValidationRecord:
    profile = ctx.profile
    runtime_cls, stand_in = validation_runtime(artifact.format, profile)
    note = ""
    if stand_in:
        note = (f"{profile.validate.runtime} cannot run {artifact.format.value}; validated {artifact.path.name} on "
                f"{runtime_cls.name}")
    if not runtime_cls.available():
        raise MissingBackendError(f"validating {profile.name} needs the {runtime_cls.name} runtime, which is not installed",
                                  f"pip install 'edgeconv[{runtime_cls.extra}]'")
    runtime = runtime_cls()
    gate = asdict(profile.validate.gate)
    why_not = runtime_cls.can_execute_here()
    if why_not is not None:
        check = runtime.check_structure(artifact, ctx)
        record = ValidationRecord(runtime_cls.name, "structural", check.passed, None, gate, check.problems,
                                  {}, dict(check.checks), why_not, stand_in=stand_in)
        if not check.passed:
            raise AccuracyGateError(f"{profile.name}: structural validation failed: {'; '.join(check.problems)}",
                                    _structural_hint(ctx), details={"validation": asdict(record)})
        return record
    samples = validation_samples(ctx)
    references = source_outputs(samples, ctx, cache)
    session = runtime.load(artifact, ctx)
    actuals = []
    with ctx.reporter.task(f"validating {profile.name}", total=len(samples)) as progress:
        for feeds in samples:
            actuals.append(session.run(feeds))
            progress.advance()
    names = ctx.source.output_names or session.output_names
    metrics = compare(names, references, actuals)
    result = check_gate(metrics, profile.validate.gate)
    task = task_result(samples, list(names), references, actuals, ctx, cache)
    failures = (*result.failures, *check_task_gate(task, profile.validate.gate.max_task_drop))
    described = samples.describe()
    if reuses_calibration(ctx.options) and samples.kind in ("files", "images"):
        described["reused_calibration"] = True
        ctx.warn("validated on the calibration samples (no separate --eval): the numbers are optimistic; pass "
                 "--eval DIR with held-out data")
    record = ValidationRecord(runtime_cls.name, "numerical", not failures, metrics.to_json(), gate, failures,
                              described, note=note, task=task, stand_in=stand_in)
    if samples.kind == "generated":
        ctx.warn("validated on generated random inputs (no --eval/--calib data given); pass --eval DIR for real numbers")
    if failures:
        search = _search_summary(ctx)
        hint = "pass real --calib data, pick a higher-precision profile, or relax the gate with --set validate.gate.<key>=..."
        if search:
            more = "raise it with --max-fallback N, or " if len(search["kept"]) >= (search["budget"] or 0) else ""
            hint = (f"the mixed-precision search kept {len(search['kept'])} tensor(s) in {search['precision']} (budget "
                    f"{search['budget']}, judged on {search['scored_on']}); {more}" + hint)
        raise AccuracyGateError(f"{profile.name} failed its accuracy gate: {'; '.join(failures)}", hint,
                                details={"target": profile.name, "validation": asdict(record),
                                         **({"fallback": search} if search else {})})
    return record


def _structural_hint(ctx: StepContext) -> str:
    """What to change when a structural check fails; after a Core ML mixed-bit palette search, what it reached and what
    passing would take (notes.coreml_mixed_bits)."""
    search = ctx.notes.get("coreml_mixed_bits")
    if not isinstance(search, dict) or not search.get("after") or search.get("passed_before"):
        return "see the listed problems"
    done = (f"the mixed-bit palette search raised {len(search.get('raised') or [])} weight(s) "
            f"({search['average_bits']:.2f} bits per weight, budget {search['max_average_bits']:g}) and reached "
            f"{search['after']['snr_db']:.1f} dB on the reference executor")
    needed = search.get("needed_average_bits")
    if needed:
        budget = math.ceil(needed * 100) / 100
        return f"{done}; passing takes {needed:.2f} bits per weight: --set quantize.options.max_average_bits={budget:.2f}"
    ceiling = search.get("ceiling") or {}
    if ceiling and not search.get("raised"):
        return (f"{done}; every weight at {search['raised_bits']} bits reaches only {ceiling.get('snr_db', 0):.1f} dB: "
                "use a wider profile (coreml-palettize6 / coreml-w8)")
    return f"{done}; use a wider profile (coreml-palettize6 / coreml-w8)"


def _search_summary(ctx: StepContext) -> dict[str, Any] | None:
    """What the quantizer's mixed-precision search did for this target (ctx.quantized.fallback, in the manifest as
    notes.quantize.fallback), for the error of a failed gate: no manifest is written then, and this is what a user
    tunes next."""
    fallback = ctx.quantized.fallback if ctx.quantized is not None else None
    if not isinstance(fallback, dict) or fallback.get("gate_passed_before"):
        return None
    return {"precision": fallback.get("precision"), "budget": fallback.get("budget"),
            "scored_on": fallback.get("scored_on", "onnxruntime"), "before": fallback.get("before"),
            "after": fallback.get("after"), "kept": [n.get("tensor") for n in fallback.get("nodes") or []],
            "candidates_measured": fallback.get("candidates_measured"), "seconds": fallback.get("seconds")}


def task_result(samples: SampleSet, names: list[str], references: list[list[Any]], actuals: list[list[Any]], ctx: StepContext,
                cache: dict[str, Any]) -> dict[str, Any] | None:
    """The task metric (task_metrics.py) of the source and of this artifact, or None when none applies. The labels,
    the chosen metric and the source's value are computed once per run (cached beside the source outputs)."""
    from edgeconv.eval_data import sample_labels
    from edgeconv.task_metrics import choose_metric, measure, parse_metric_spec

    key = f"task:{id(references)}"
    if key not in cache:
        labels = sample_labels(samples)
        spec = parse_metric_spec(ctx.options.metric) if ctx.options.metric else None
        names = [*names, *(f"output_{i}" for i in range(len(names), len(references[0]) if references else 0))]
        metric = choose_metric(spec, names, references[0], labels) if references else None
        values = metric.compute(references, labels, references) if metric is not None else None
        cache[key] = (labels, metric, values)
        if labels is not None and metric is None:
            ctx.warn("the --eval samples carry labels, but no built-in task metric fits the outputs "
                     f"({', '.join(names)}); pass --metric (e.g. top1:output=NAME, or pkg.module:function)")
    labels, metric, values = cache[key]
    if metric is None:
        return None
    task = measure(metric, references, actuals, labels, values)
    bound = ctx.profile.validate.gate.max_task_drop
    if bound is not None and metric.percent and task["samples"] and 100.0 / task["samples"] > bound:
        ctx.warn(f"one of the {task['samples']} evaluation samples is {100.0 / task['samples']:.2g} points of "
                 f"{metric.name}, more than max_task_drop {bound:g}: use more --eval samples for a meaningful gate")
    return task
