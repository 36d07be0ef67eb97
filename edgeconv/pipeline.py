"""Plan and run a conversion: source → (export) → normalise → (quantize) → (compile) → validate → write.

`build_plan` searches the converter graph for the cheapest available route to each profile's format (direct edges
such as keras → tflite beat going through ONNX when they exist), inserts normalisation wherever the route reaches
ONNX and the profile's ONNX quantizer, and adds branches for extra formats the profile produces. `run` executes it in
a staging folder, validates every target against the source, and commits all outputs at once.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions, QuantizeResult, StepContext
from edgeconv.converters import all_converters
from edgeconv.converters.base import Converter
from edgeconv.deps import installed_versions
from edgeconv.errors import (AccuracyGateError, EdgeconvError, Interrupted, MissingBackendError, OutputError,
                             SafetyError, StepSkipped, TargetsFailed, UnsupportedError, first_line)
from edgeconv.formats import FILE_SUFFIXES, Artifact, Format
from edgeconv.manifest import (MANIFEST_NAME, ArtifactRecord, Manifest, SourceRecord, StepRecord, TargetRecord, sha256_of,
                               shipped_size, size_of)
from edgeconv.native_libs import load_in_safe_order
from edgeconv.normalise import normalise
from edgeconv.onnx_graph import static_shape_error, stem_of
from edgeconv.outputs import OutputTransaction, disk_full_cause, factory_paths, io_error
from edgeconv.progress import NullReporter, Reporter
from edgeconv.quantizers import quantizer_for
from edgeconv.routes import fallback_route, search_route
from edgeconv.sources import SourceModel, open_source
from edgeconv.stage_cache import ContextSnapshot, StageCache, cache_key
from edgeconv.targets.schema import Profile, apply_overrides, check_distinct_names
from edgeconv.validation_stage import (planned_validation, source_outputs, validate_target, validated_on, validation_runtime,
                                      validation_samples)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    kind: str  # export | normalise | quantize | compile | validate | write
    name: str
    converter: type[Converter] | None = None
    quantizer: str | None = None  # precision handled by the ONNX quantizer
    branch: bool = False  # takes the hub ONNX as input and adds an extra artifact

    def describe(self) -> str:
        if self.converter is not None:
            c = self.converter
            state = "" if c.available() else f"  [needs: pip install 'edgeconv[{c.extra}]']"
            return f"{self.kind:<9} {c.name} ({c.source} → {c.target}){state}"
        return f"{self.kind:<9} {self.name}"


@dataclass(frozen=True)
class TargetPlan:
    profile: Profile
    steps: tuple[Step, ...]
    source: SourceModel
    # the steps of the other installed route, run when the first converter of `steps` refuses the model (exit 4)
    fallback: tuple[Step, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.profile.name, "steps": [s.describe() for s in self.steps]}
        if self.fallback:
            out["fallback"] = {"when": f"{self.first_converter()} refuses the model",
                               "steps": [s.describe() for s in self.fallback]}
        return out

    def first_converter(self) -> str:
        return next((s.converter.name for s in self.steps if s.converter is not None and not s.branch), "")


@dataclass
class Plan:
    source: SourceModel
    options: ConvertOptions
    targets: list[TargetPlan] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"source": {"path": str(self.source.artifact.path), "format": self.source.artifact.format.value,
                           "inputs": [asdict(s) for s in self.source.inputs]},
                "targets": [t.to_json() for t in self.targets]}


def find_route(src: Format, dst: Format, artifact: Artifact, profile: Profile) -> list[type[Converter]]:
    """Cheapest chain of converter edges from src to dst (routes.search_route); unavailable edges cost a penalty so
    that an installed route wins, but a route is still found (and reported with its pip extra) when none is
    installed."""
    route = search_route(src, dst, artifact, profile)
    if route is None:
        raise UnsupportedError(f"no route from {src} to {dst} for target {profile.name}",
                               f"edgeconv converts {src} sources to: {', '.join(sorted(reachable(src)))}")
    return route


def reachable(src: Format) -> set[str]:
    out, todo = set(), [src]
    convs = all_converters()
    while todo:
        fmt = todo.pop()
        for c in convs:
            if c.source == fmt and c.target.value not in out:
                out.add(c.target.value)
                todo.append(c.target)
    return out


def _onnx_steps(profile: Profile) -> list[Step]:
    fuse = profile.normalise.fuse  # in the name: steps (and their caches) with other fusions are other steps
    decompose = profile.normalise.decompose
    steps = [Step("normalise", "normalise" + (f" + fuse {', '.join(fuse)}" if fuse else "")
                  + (f" + decompose {', '.join(decompose)}" if decompose else ""))]
    scheme = profile.quantize
    if scheme.stage == "onnx" and scheme.precision != "fp32":
        quantizer_for(scheme.precision)  # fails early (exit 4) when no quantizer handles it
        steps.append(Step("quantize", f"quantize {scheme.precision}", quantizer=scheme.precision))
    return steps


def plan_target(source: SourceModel, profile: Profile) -> TargetPlan:
    fmt = source.artifact.format
    route = find_route(fmt, profile.primary_format, source.artifact, profile)
    for conv in route:
        if conv.unsupported_reason:
            raise UnsupportedError(f"target {profile.name}: {conv.unsupported_reason}", conv.unsupported_hint,
                                   details={"source_format": fmt.value, "target_format": profile.primary_format.value})
    other = fallback_route(fmt, profile.primary_format, source.artifact, profile, route)
    fallback = _route_steps(fmt, other, source, profile) if other and all(c.available() for c in route) else ()
    return TargetPlan(profile, _route_steps(fmt, route, source, profile), source, fallback)


def _route_steps(fmt: Format, route: list[type[Converter]], source: SourceModel, profile: Profile) -> tuple[Step, ...]:
    steps: list[Step] = []
    if fmt == Format.ONNX:
        steps += _onnx_steps(profile)
    for conv in route:
        steps.append(Step("export" if conv.stage == "export" else "compile", conv.name, converter=conv))
        if conv.target == Format.ONNX:
            steps += _onnx_steps(profile)
    through_onnx = fmt == Format.ONNX or any(s.converter and s.converter.target == Format.ONNX for s in steps)
    for extra in profile.produces[1:]:
        if extra == Format.ONNX:
            continue  # the hub ONNX itself is written (see run)
        hub = Format.ONNX if through_onnx else fmt
        for conv in find_route(hub, extra, source.artifact, profile):
            steps.append(Step("compile", conv.name, converter=conv, branch=True))
    steps += [Step("validate", f"validate on {planned_validation(profile)}"), Step("write", "write")]
    return tuple(steps)


def resolve_shapes(source: SourceModel, profile: Profile, options: ConvertOptions) -> SourceModel:
    shapes = dict(profile.shapes.defaults)
    shapes = {k: v for k, v in shapes.items() if any(s.name == k and not s.is_static for s in source.inputs)}
    shapes.update(options.input_shapes)
    resolved = source.with_shapes(shapes) if shapes else source
    if profile.shapes.static:
        dynamic = resolved.dynamic_inputs()
        if dynamic:
            raise static_shape_error(f"target {profile.name}", dynamic)
    return resolved


def build_plan(source_artifact: Artifact, profiles: list[Profile], options: ConvertOptions) -> Plan:
    profiles = [apply_overrides(profile, list(options.overrides)) for profile in profiles]
    check_distinct_names(profiles)  # before the source is opened: two targets named alike would share OUTDIR/<name>
    source = open_source(source_artifact, options)
    plan = Plan(source, options)
    for profile in profiles:
        plan.targets.append(plan_target(resolve_shapes(source, profile, options), profile))
    return plan


@dataclass(frozen=True)
class _StepOutput:
    artifact: Artifact
    cached: bool  # restored from the stage cache of an earlier run
    notes: dict[str, Any] = field(default_factory=dict)  # what the step added to its target's notes and warnings,
    warnings: tuple[str, ...] = ()  # replayed into every other target that shares the step
    quantized: QuantizeResult | None = None  # a quantize step's result, handed to every target that shares it


def _replay(notes: dict[str, Any], warnings: Any, ctx: StepContext, quantized: QuantizeResult | None) -> None:
    ctx.notes.update(json.loads(json.dumps(notes)))  # a copy: targets' manifests never share mutable notes
    for warning in warnings:
        ctx.warn(warning)
    if quantized is not None:
        ctx.quantized = quantized


@dataclass
class _RunState:
    staging: Path
    options: ConvertOptions
    reporter: Reporter
    stages: StageCache | None = None  # across runs (None: --no-cache)
    cache: dict[str, _StepOutput] = field(default_factory=dict)  # within this run, between targets
    counter: int = 0
    shown: set[str] = field(default_factory=set)  # warnings on screen so far: each once per run (StepContext.warn)

    def work_dir(self, target: str, step: str) -> Path:
        self.counter += 1
        return self.staging / ".work" / f"{self.counter:02d}-{target}-{step.replace(' ', '-')}"


def _cache_key(step: Step, artifact: Artifact, profile: Profile, source: SourceModel) -> str:
    """A step's key within one run: the targets that share it (same input, same settings) reuse its output."""
    settings: dict[str, Any] = {"opset": asdict(profile.opset), "inputs": [asdict(s) for s in source.inputs]}
    if step.kind == "quantize":  # the accuracy fallback searches until the gate passes: the gate decides the output
        settings["quantize"] = asdict(profile.quantize)
        settings["validate"] = asdict(profile.validate)
    if step.kind == "compile":
        settings["profile"] = profile.name
    return cache_key([step.kind, step.name, str(artifact.path), settings])


def _run_step(step: Step, artifact: Artifact, ctx: StepContext, state: _RunState, record: TargetRecord) -> Artifact:
    key = _cache_key(step, artifact, ctx.profile, ctx.source)
    if key in state.cache and step.kind in ("export", "normalise", "quantize"):
        shared = state.cache[key]
        _replay(shared.notes, shared.warnings, ctx, shared.quantized)
        record.steps.append(StepRecord(step.kind, step.name, 0.0, reused=True, cached=shared.cached))
        return shared.artifact
    step_ctx = ctx.for_step(state.work_dir(ctx.profile.name, step.name))
    started = time.perf_counter()
    stage_key: str | None = None
    if state.stages is not None:
        plugin = step.converter or (quantizer_for(step.quantizer) if step.quantizer else None)
        stage_key = state.stages.key(step.kind, step.name, plugin, artifact, step_ctx)
        hit = state.stages.restore(stage_key, step_ctx.work_dir) if stage_key else None
        if hit is not None:
            state.reporter.stage(step.kind, f"{ctx.profile.name}: {step.name} (cached)")
            _replay(hit.notes, hit.warnings, ctx, hit.quantized)
            record.steps.append(StepRecord(step.kind, step.name, round(time.perf_counter() - started, 3), reused=True,
                                           cached=True))
            state.cache[key] = _StepOutput(hit.artifact, True, hit.notes, tuple(hit.warnings), hit.quantized)
            return hit.artifact
    before = ContextSnapshot.of(ctx)
    state.reporter.stage(step.kind, f"{ctx.profile.name}: {step.name}")
    if step.kind == "normalise":
        shapes = {s.name: tuple(d for d in s.shape if isinstance(d, int)) for s in ctx.source.inputs if s.is_static}
        result, report = normalise(artifact, step_ctx.work_dir / "model.onnx", ctx.profile.opset, shapes,
                                   ctx.profile.normalise.fuse, ctx.profile.normalise.decompose)
        record.notes["normalise"] = asdict(report)
        for warning in report.warnings:
            ctx.warn(warning)
    elif step.kind == "quantize":
        result = quantizer_for(step.quantizer or "")().quantize(artifact, step_ctx)
    else:
        assert step.converter is not None
        conv = step.converter
        if not conv.available():
            raise MissingBackendError(f"target {ctx.profile.name} needs {conv.name}, whose backend is not installed",
                                      f"pip install 'edgeconv[{conv.extra}]'")
        result = conv().convert(artifact, step_ctx)
    record.steps.append(StepRecord(step.kind, step.name, round(time.perf_counter() - started, 3)))
    notes, warnings = before.delta(ctx)
    if step_ctx.quantized is not None:
        ctx.quantized = step_ctx.quantized
    if state.stages is not None and stage_key:
        state.stages.store(stage_key, result, step_ctx.work_dir, notes, warnings, step=f"{step.kind} {step.name}",
                           quantized=step_ctx.quantized)
    state.cache[key] = _StepOutput(result, False, notes, tuple(warnings), step_ctx.quantized)
    return result


class _ConverterRefused(Exception):
    """A converter of a target's first route refused the model (exit 4) and the target has a fallback route."""

    def __init__(self, step: Step, error: UnsupportedError) -> None:
        super().__init__(error.message)
        self.step, self.error = step, error


@dataclass
class _RouteRun:
    current: Artifact
    hub: Artifact | None
    extras: list[Artifact] = field(default_factory=list)
    not_built: list[tuple[Format, str]] = field(default_factory=list)
    quantized: tuple[Artifact, Artifact] | None = None  # (float, quantized) ONNX, for the per-layer report


def _run_route(steps: tuple[Step, ...], source: Artifact, ctx: StepContext, state: _RunState, record: TargetRecord,
               has_fallback: bool) -> _RouteRun:
    """Run a route's steps up to validation. With `has_fallback`, a converter's refusal is _ConverterRefused."""
    ran = _RouteRun(source, source if source.format == Format.ONNX else None)
    for step in steps:
        if step.kind in ("validate", "write"):
            continue
        input_artifact = ran.hub if step.branch and ran.hub is not None else ran.current
        try:
            result = _run_step(step, input_artifact, ctx, state, record)
            if step.kind == "quantize":
                ran.quantized = (input_artifact, result)
        except StepSkipped as skipped:
            assert step.converter is not None
            ran.not_built.append((step.converter.target, skipped.reason))
            ctx.warn(skipped.reason)  # same list as record.warnings, and shown to the user
            continue
        except UnsupportedError as e:
            if has_fallback and step.converter is not None and not step.branch:
                raise _ConverterRefused(step, e) from e
            raise
        if step.branch:
            ran.extras.append(result)
        else:
            ran.current = result
        if result.format == Format.ONNX:
            ran.hub = result
    return ran


def _run_target(target: TargetPlan, state: _RunState, validation_cache: dict[str, Any]) -> TargetRecord:
    profile = target.profile
    record = TargetRecord(profile.name, {"description": profile.description, "precision": profile.quantize.precision,
                                         "produces": [f.value for f in profile.produces], "file": profile.source_file})
    ctx = StepContext(state.staging, profile, state.options, target.source, state.reporter, record.warnings, record.notes,
                      state.shown)
    if any(s.kind == "quantize" for s in target.steps) or profile.quantize.stage == "converter":
        # the reference outputs validation will compare against: NaN/Inf there is exit 3 before anything is quantized
        source_outputs(validation_samples(ctx), ctx, validation_cache)
    notes_before = dict(record.notes)
    try:
        ran = _run_route(target.steps, target.source.artifact, ctx, state, record, bool(target.fallback))
    except _ConverterRefused as refused:
        first = refused.error
        route = " → ".join(s.converter.name for s in target.fallback if s.converter is not None and not s.branch)
        ctx.warn(f"{refused.step.name} refused the model ({first.message}); trying the other route: {route}")
        record.notes.clear()  # what the refused route noted (its route, its ops) does not describe the artifact
        record.notes.update(notes_before)
        record.notes["route_fallback"] = {"refused": refused.step.name, "error": first.message, "route": route}
        try:
            ran = _run_route(target.fallback, target.source.artifact, ctx, state, record, False)
        except EdgeconvError as e:
            e.details.setdefault("first_route_error", {"step": refused.step.name, "message": first.message})
            raise
    current, hub, extras, not_built, quantized = ran.current, ran.hub, ran.extras, ran.not_built, ran.quantized
    if current.format != profile.primary_format and not any(f == profile.primary_format for f, _ in not_built):
        raise UnsupportedError(f"target {profile.name}: route ended at {current.format}", "this is a bug")
    primary = current if current.format == profile.primary_format else hub
    if Format.ONNX in profile.produces[1:] and hub is not None and hub is not primary:
        extras.append(hub)
    assert primary is not None
    runtime_cls, stand_in = validation_runtime(primary.format, profile)
    state.reporter.stage("validate", f"{profile.name} on {validated_on(runtime_cls.name, stand_in)}")
    try:
        record.validation = validate_target(primary, ctx, validation_cache)
    except AccuracyGateError as e:
        if quantized is not None and primary is quantized[1]:
            _add_worst_layers(e, *quantized, ctx)
        raise
    if quantized is not None and primary is quantized[1] and primary.format == Format.ONNX \
            and profile.validate.runtime == "onnxruntime" and record.validation.kind == "numerical":
        from edgeconv.quantizers.latency_check import check_target

        check_target(*quantized, ctx)  # slower than float on ORT CPU: a warning naming the cause, notes.latency
    _write_target(record, primary, extras, not_built, target, state)
    return record


def _add_worst_layers(error: AccuracyGateError, float_model: Artifact, quant_model: Artifact, ctx: StepContext,
                      top: int = 5) -> None:
    """A gate failure of a quantized ONNX model names the layers that lose the most (worst channel SNR first)."""
    rows: list[dict[str, Any]] = list(ctx.quantized.layers) if ctx.quantized is not None else []
    if not rows:
        from edgeconv.quantizers.fallback import layer_report

        try:
            rows = layer_report(float_model.path, quant_model.path, ctx, top=top)
        except Exception as e:  # noqa: BLE001 - extra information only: the gate failure stays the error
            log.warning("per-layer report unavailable: %s", e)
            return
    rows = list(rows)[:top]
    if not rows:
        return
    error.details["worst_layers"] = rows
    worst = rows[0]
    error.message += f"; worst layer: {worst['node']} ({worst['op_type']}, SNR {worst['snr_db']} dB)"
    error.hint += "; see details.worst_layers (or `edgeconv inspect-accuracy`)"


def _artifact_name(stem: str, artifact: Artifact, taken: set[str]) -> str:
    suffix = FILE_SUFFIXES.get(artifact.format, artifact.path.suffix)
    name = f"{stem}{suffix}"
    return name if name not in taken else f"{stem}.{artifact.format.value}{suffix}"


def _write_target(record: TargetRecord, primary: Artifact, extras: list[Artifact], not_built: list[tuple[Format, str]],
                  target: TargetPlan, state: _RunState) -> None:
    """Copy the target's artifacts into STAGING/<target>/ named after the source; companions keep their names (the
    model files refer to them by name)."""
    folder = state.staging / target.profile.name
    stem = stem_of(target.source.artifact.path)
    taken: set[str] = set()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for artifact in [primary, *extras]:
            name = _artifact_name(stem, artifact, taken)
            files = [(artifact.path, name, "model")] + [(c, c.name, "companion") for c in artifact.companions]
            for path, dest_name, _ in files:
                taken.add(dest_name)
                if path.is_dir():
                    shutil.copytree(path, folder / dest_name)
                else:
                    shutil.copyfile(path, folder / dest_name)
            staged = Artifact(folder / name, artifact.format, companions=tuple(folder / c.name for c in artifact.companions))
            for path, dest_name, role in files:
                # a companion that is an ONNX graph of its own (the QDQ graph a QNN context was compiled from) says so
                fmt = Format.ONNX.value if role == "companion" and path.suffix == ".onnx" else artifact.format.value
                record.artifacts.append(ArtifactRecord.of(folder / dest_name, state.staging, fmt, role,
                                                          shipped_size(staged) if role == "model" else None))
    except OSError as e:
        raise io_error(e, f"writing {folder}") from e
    for fmt, reason in not_built:
        record.artifacts.append(ArtifactRecord(f"{target.profile.name}/(not built)", fmt.value, None, None, "not-built", reason))


def recorded_source(plan: Plan) -> SourceModel:
    """The source as the manifest records it: with the --input-shape dims applied, and where the source itself does not
    know an input's rank (a TorchScript module), the dims its first target ran with; bench and validate feed the
    artifact with these."""
    source = plan.source.with_shapes(plan.options.input_shapes) if plan.options.input_shapes else plan.source
    if plan.targets and any(not s.rank_known for s in source.inputs):
        ran = {s.name: s for s in plan.targets[0].source.inputs}
        source = replace(source, inputs=tuple(ran.get(s.name, s) if not s.rank_known else s for s in source.inputs))
    return source


def source_record(source: SourceModel) -> SourceRecord:
    path = source.artifact.path
    exists = path.exists()
    return SourceRecord(source.description or str(path), source.artifact.format.value, source.artifact.variant,
                        sha256_of(path) if exists else None, size_of(path) if exists else None,
                        [asdict(s) for s in source.inputs])


def options_record(options: ConvertOptions) -> dict[str, Any]:
    data = asdict(options)
    return {k: v for k, v in data.items() if v not in (None, False, (), {}, [])}


def check_backends(plan: Plan) -> None:
    """Before any work: every converter the plan needs is installed, else exit 4 naming the pip extras."""
    missing = {(t.profile.name, s.converter.name, s.converter.extra) for t in plan.targets for s in t.steps
               if s.converter is not None and not s.converter.available()}
    if missing:
        extras = sorted({extra for _, _, extra in missing})
        raise MissingBackendError(
            "missing optional backend(s): " + ", ".join(f"{target} needs {conv} (edgeconv[{extra}])"
                                                        for target, conv, extra in sorted(missing)),
            f"pip install 'edgeconv[{','.join(extras)}]'", details={"extras": extras})


def run(plan: Plan, outdir: Path, *, force: bool = False, reporter: Reporter | None = None) -> Manifest:
    reporter = reporter or NullReporter()
    options = plan.options
    check_backends(plan)
    load_in_safe_order(plan)
    protected = (*plan.source.artifact.all_paths(), *(p for p in (options.calib, options.eval, options.weights)
                                                       if p and p != "random"),
                 *(t.profile.source_file for t in plan.targets if t.profile.source_file),
                 *factory_paths(options.model_factory), *(p for m in options.custom_objects for p in factory_paths(m)))
    with OutputTransaction(outdir, force, protected) as tx:
        try:
            return _run_in(plan, tx, reporter)
        except Exception as e:  # noqa: BLE001 - re-raised; --keep-work keeps the stage files of the failed run first
            if options.keep_work and tx.staging is not None:  # TargetsFailed was committed, .work included
                _keep_failed_work(tx, e)
            raise


def _keep_failed_work(tx: OutputTransaction, error: Exception) -> None:
    """--keep-work on a failed run: OUTDIR appears holding only the stage files (.work/), to inspect what failed, and
    the error says where. An OUTDIR that already holds a result (--force) is left as it was: a failed run does not
    replace it."""
    assert tx.staging is not None
    work = tx.staging / ".work"
    if tx.outdir.exists() or not work.is_dir():
        if work.is_dir() and isinstance(error, EdgeconvError):
            error.hint = f"{error.hint}; --keep-work: the stage files were not kept ({tx.outdir} holds an earlier result)"
        return
    for entry in tx.staging.iterdir():  # what the failed targets half-wrote
        if entry.is_dir() and entry.name != ".work":
            shutil.rmtree(entry, ignore_errors=True)
        elif not entry.is_dir():
            entry.unlink(missing_ok=True)
    try:
        tx.commit()
    except EdgeconvError:
        return  # the run's own error is what the user needs; the work dir is a convenience
    if isinstance(error, EdgeconvError):
        error.hint = f"{error.hint}; --keep-work: the failed run's stage files are in {tx.outdir / '.work'}"


def _run_in(plan: Plan, tx: OutputTransaction, reporter: Reporter) -> Manifest:
    """run()'s body inside the output transaction."""
    options, outdir = plan.options, tx.outdir
    assert tx.staging is not None
    state = _RunState(tx.staging, options, reporter, StageCache.for_run(options))
    validation_cache: dict[str, Any] = {}
    records: list[TargetRecord] = []
    failures: list[tuple[str, EdgeconvError]] = []
    for target in plan.targets:
        try:
            records.append(_run_target(target, state, validation_cache))
        except Exception as e:  # noqa: BLE001 - re-raised unless --keep-going records it (then bugs are logged)
            error = _target_failure(e, options.keep_going)
            shutil.rmtree(tx.staging / target.profile.name, ignore_errors=True)  # nothing half-written is kept
            failures.append((target.profile.name, error))
            records.append(_failed_record(target.profile, error))
    if failures and len(failures) == len(plan.targets):
        raise max(failures, key=lambda f: f[1].exit_code)[1]  # nothing to keep: as without --keep-going
    manifest = Manifest(source_record(recorded_source(plan)), records, installed_versions(), options_record(options))
    try:
        if not options.keep_work:
            shutil.rmtree(tx.staging / ".work", ignore_errors=True)
        manifest.write(tx.staging / MANIFEST_NAME)
    except OSError as e:
        raise io_error(e, "writing the manifest") from e
    tx.commit()
    if failures:
        raise TargetsFailed(failures, len(plan.targets), str(outdir), manifest.to_json())
    return manifest


def _target_failure(error: Exception, keep_going: bool) -> EdgeconvError:
    """What a failed target's exception means for the run: a full disk (a toolchain may have wrapped it) is exit 6 and,
    like I/O and safety errors, ends the run; without --keep-going every failure does. With it, the rest is recorded:
    an EdgeconvError as it is, anything else as an internal error (logged with its traceback: it is a bug)."""
    if isinstance(error, (OSError, EdgeconvError)):
        full = disk_full_cause(error)
        if full is not None and not isinstance(error, OutputError):
            raise io_error(full, "writing intermediate files") from error
    if not keep_going or isinstance(error, (OutputError, SafetyError, Interrupted)):
        raise error
    if isinstance(error, EdgeconvError):
        return error
    log.error("internal error in one target (--keep-going goes on with the others)", exc_info=error)
    return EdgeconvError(f"internal error: {type(error).__name__}: {first_line(error)}",
                         "this is a bug in edgeconv; please report it with the traceback above")


def _failed_record(profile: Profile, error: EdgeconvError) -> TargetRecord:
    record = TargetRecord(profile.name, {"description": profile.description, "precision": profile.quantize.precision,
                                         "produces": [f.value for f in profile.produces], "file": profile.source_file})
    record.error = error.to_json()
    return record

