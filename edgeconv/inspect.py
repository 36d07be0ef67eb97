"""What is inside a model, and which target profiles can take it (used by `edgeconv inspect`).

ONNX models are read with `onnx` only (protobuf, no runtime); a .tflite is read from its flatbuffer; PyTorch and Keras
sources are opened with their framework to learn their inputs and outputs (their op histogram needs an ONNX export
first). Nothing here prints.
"""

from __future__ import annotations


from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import EdgeconvError
from edgeconv.formats import Artifact, Format, TensorSpec, detect

USER_GUIDE = """\
ONNX models are read without running them (the protobuf only), a .tflite from its flatbuffer, an OpenVINO IR from its
.xml; PyTorch and Keras sources are opened with their framework to learn their inputs and outputs (an op histogram of
those needs an ONNX export, which `edgeconv convert -t onnx` makes). A dynamic dim is shown by its name and axis
(`batch (axis 0)`; `?` where the model names none; `s0` for a torch.export symbolic size). The target list says, per
target, whether this model can go there and, if not, why; targets refused for one reason share one row."""

# ONNX TensorProto data types → (name, bytes per element)
_ONNX_TYPES: dict[int, tuple[str, float]] = {
    1: ("float32", 4), 2: ("uint8", 1), 3: ("int8", 1), 4: ("uint16", 2), 5: ("int16", 2), 6: ("int32", 4),
    7: ("int64", 8), 9: ("bool", 1), 10: ("float16", 2), 11: ("float64", 8), 12: ("uint32", 4), 13: ("uint64", 8),
    16: ("bfloat16", 2), 17: ("float8e4m3fn", 1), 21: ("uint4", 0.5), 22: ("int4", 0.5),
}


@dataclass
class ProfileFit:
    """Can `edgeconv convert MODEL --target NAME` work here? status: yes | needs-input-shape | not-installed | no."""

    target: str
    status: str
    reasons: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)


@dataclass
class FitGroup:
    """Profiles that share one verdict and one reason (six Core ML profiles refusing an ONNX source): said once."""

    label: str  # "coreml-*, ane-fp16 (6 profiles)", or the one target's name
    targets: list[str]
    status: str
    reasons: list[str]


def _own_reason(reason: str, target: str) -> str:
    """A reason without the target's own name in it, so that profiles refused for the same cause compare equal."""
    reason = reason.removeprefix(f"target {target}: ")
    return reason.replace(f" for target {target}", "").replace(f"target {target} ", "this target ")


def group_fits(fits: list[ProfileFit]) -> list[FitGroup]:
    """One group per (status, reasons) in first-seen order; profiles without reasons stay one per row."""
    groups: dict[tuple[str, ...], FitGroup] = {}
    for fit in fits:
        reasons = [_own_reason(r, fit.target) for r in fit.reasons]
        key = (fit.status, *reasons) if reasons else ("", fit.target)
        group = groups.setdefault(key, FitGroup("", [], fit.status, reasons if reasons else list(fit.reasons)))
        group.targets.append(fit.target)
    everyone = [f.target for f in fits]
    for group in groups.values():
        group.label = _label(group.targets, everyone)
        if len(group.targets) == 1:  # a reason said once anyway keeps its own wording
            group.reasons = next(f.reasons for f in fits if f.target == group.targets[0])
    return list(groups.values())


def _label(targets: list[str], everyone: list[str]) -> str:
    """`coreml-*` where a group holds every checked profile of that family prefix (2 or more), else the names."""
    if len(targets) == 1:
        return targets[0]
    parts: list[str] = []
    for name in targets:
        prefix = name.split("-")[0] + "-"
        family = [t for t in everyone if t.startswith(prefix)]
        if len(family) > 1 and all(t in targets for t in family):
            if prefix + "*" not in parts:
                parts.append(prefix + "*")
        else:
            parts.append(name)
    return f"{', '.join(parts)} ({len(targets)} profiles)"


@dataclass
class ModelReport:
    path: str
    format: str
    variant: str
    bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: dict[str, int] = field(default_factory=dict)  # op type → count (sorted by count)
    nodes: int | None = None
    params: int | None = None  # elements in weights (initializers / constant tensors)
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)  # weight bytes per element type
    opsets: dict[str, int] = field(default_factory=dict)
    producer: str = ""
    quantized: bool = False
    notes: list[str] = field(default_factory=list)
    profiles: list[ProfileFit] = field(default_factory=list)

    @property
    def dynamic_dims(self) -> dict[str, list[dict[str, Any]]]:
        return {s.name: dynamic_axes(s) for s in self.inputs + self.outputs if s.dynamic_dims}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [_spec_json(s) for s in self.inputs]
        data["outputs"] = [_spec_json(s) for s in self.outputs]
        data["dynamic_dims"] = self.dynamic_dims
        data["profile_groups"] = [asdict(g) for g in group_fits(self.profiles)]
        return data


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    """shape: ints, a dynamic dim's name (ONNX dim_param `batch`, torch.export's `s0`, OpenVINO's `1..8`) or null where
    the model names none; null when not even the rank is known. dynamic_dims: each dynamic axis with its name."""
    shape = [d if isinstance(d, str) or (isinstance(d, int) and d > 0) else None for d in spec.shape]
    return {"name": spec.name, "shape": shape if spec.rank_known else None, "dtype": spec.dtype,
            "dynamic_dims": dynamic_axes(spec)}


def dynamic_axes(spec: TensorSpec) -> list[dict[str, Any]]:
    """[{"axis": 0, "name": "batch"}, ...]: the dynamic dims of a tensor (name null where the model gives none)."""
    return [{"axis": i, "name": spec.shape[i] if isinstance(spec.shape[i], str) else None} for i in spec.dynamic_dims]


# --- ONNX -------------------------------------------------------------------------------------------------------------

def _onnx_graph_ops(graph: Any, counts: Counter, constants: list[Any]) -> int:
    nodes = 0
    for node in graph.node:
        nodes += 1
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        counts[op] += 1
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                constants.append(attr.t)
            if attr.type == 5:  # GRAPH
                nodes += _onnx_graph_ops(attr.g, counts, constants)
            elif attr.type == 10:  # GRAPHS
                for g in attr.graphs:
                    nodes += _onnx_graph_ops(g, counts, constants)
    return nodes


def _tensor_elements(tensor: Any) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


def inspect_onnx(artifact: Artifact, report: ModelReport) -> None:
    from edgeconv.onnx_graph import io_specs
    from edgeconv.sources.onnx_source import load_onnx_checked

    model = load_onnx_checked(artifact.path, with_data=False)
    graph = model.graph
    io = io_specs(model)
    report.inputs, report.outputs = list(io.inputs), list(io.outputs)
    counts: Counter = Counter()
    constants: list[Any] = []
    report.nodes = _onnx_graph_ops(graph, counts, constants)
    report.ops = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    params = 0
    by_dtype: Counter = Counter()
    for tensor in [*graph.initializer, *constants]:
        n = _tensor_elements(tensor)
        name, width = _ONNX_TYPES.get(tensor.data_type, (f"onnx-type-{tensor.data_type}", 0))
        params += n
        by_dtype[name] += int(n * width)
    report.params = params
    report.bytes_by_dtype = dict(sorted(by_dtype.items(), key=lambda kv: -kv[1]))
    report.opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    report.producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    report.quantized = any(op in counts for op in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"))
    if constants:
        report.notes.append(f"{len(constants)} weight(s) stored as Constant nodes (normalisation turns them into initializers)")
    if "com.microsoft:EPContext" in counts:
        report.notes.append("contains EPContext nodes: a precompiled QNN/TensorRT context model")


# --- framework sources ------------------------------------------------------------------------------------------------

def inspect_source(artifact: Artifact, report: ModelReport, input_shapes: dict[str, tuple[int, ...]],
                   trust_code: bool = False, custom_objects: tuple[str, ...] = ()) -> Any:
    from edgeconv.context import ConvertOptions
    from edgeconv.sources import open_source

    source = open_source(artifact, ConvertOptions(input_shapes=input_shapes, trust_code=trust_code,
                                                  custom_objects=custom_objects))
    report.inputs = list(source.inputs)
    report.outputs = _source_outputs(source, report) or [TensorSpec(n, (), rank_known=False) for n in source.output_names]
    report.notes.append(f"op histogram and weights are shown for ONNX, TFLite and OpenVINO IR; run `edgeconv convert {artifact.path} "
                        "--target onnx -o OUT` and inspect the ONNX file for them")
    return source


def _source_outputs(source: Any, report: ModelReport) -> list[TensorSpec]:
    """Output names, shapes and dtypes a framework records without running the model: a Keras model's output tensors,
    a SavedModel signature's outputs, a torch.export program's user outputs (their `val` meta). TorchScript and factory
    modules record none (empty list)."""
    from edgeconv.sources.tensorflow_source import KerasModel, SavedModelFunction, _dims, _dtype_name

    handle = source.handle() if source.framework in ("tensorflow", "torch") else None
    if isinstance(handle, KerasModel):
        return [TensorSpec(n, _dims(t.shape), _dtype_name(t.dtype)) for n, t in zip(handle.output_names, handle.model.outputs)]
    if isinstance(handle, SavedModelFunction):
        outs = handle.signature.structured_outputs
        return [TensorSpec(n, _dims(outs[n].shape), _dtype_name(outs[n].dtype)) for n in handle.output_names]
    program = getattr(handle, "_program", None)  # torch_source._ExportedModule, read without the defensive copy
    if program is None:
        return []
    return _program_outputs(program, report)


def _program_outputs(program: Any, report: ModelReport) -> list[TensorSpec]:
    """A torch.export program's user outputs, from the graph signature and the output node's FakeTensor meta; symbolic
    sizes keep their names (`s0`) and their ranges go to the notes."""
    user = list(program.graph_signature.user_outputs)
    output = next((n for n in program.graph.nodes if n.op == "output"), None)
    by_name = {getattr(a, "name", None): a for a in (output.args[0] if output is not None else ())}
    specs = []
    for name in user:
        val = getattr(by_name.get(name), "meta", {}).get("val")
        if val is None or not hasattr(val, "shape"):
            specs.append(TensorSpec(str(name), (), rank_known=False))
            continue
        shape = tuple(int(d) if isinstance(d, int) else str(d) for d in val.shape)
        specs.append(TensorSpec(str(name), shape, str(val.dtype).replace("torch.", "")))
    ranges = []
    for symbol, bounds in getattr(program, "range_constraints", {}).items():
        lower, upper = getattr(bounds, "lower", None), getattr(bounds, "upper", None)
        ranges.append(f"{symbol} in [{lower}, {'∞' if str(upper) in ('oo', 'int_oo') else upper}]")
    if ranges:
        report.notes.append("dynamic sizes of the torch.export program: " + ", ".join(ranges))
    return specs


# --- profile fit -------------------------------------------------------------------------------------------------------

def profile_fits(artifact: Artifact, input_shapes: dict[str, tuple[int, ...]], names: list[str] | None = None,
                 source: Any = None, trust_code: bool = False,
                 custom_objects: tuple[str, ...] = ()) -> list[ProfileFit]:
    """For each profile: the route a conversion would take, and what stands in the way (route, backend, shapes)."""
    from edgeconv.availability import availability
    from edgeconv.context import ConvertOptions
    from edgeconv.pipeline import plan_target, resolve_shapes
    from edgeconv.sources import open_source
    from edgeconv.targets import builtin_profiles, resolve

    profiles = [resolve(n) for n in names] if names else builtin_profiles()
    options = ConvertOptions(input_shapes=input_shapes, trust_code=trust_code, custom_objects=custom_objects)
    try:
        source = source or open_source(artifact, options)
    except EdgeconvError as e:
        return [ProfileFit(p.name, "no", [e.message]) for p in profiles]
    fits = []
    for profile in profiles:
        fit = ProfileFit(profile.name, "yes")
        try:
            plan = plan_target(source, profile)
            fit.route = [s.name for s in plan.steps if s.kind not in ("validate", "write")]
            missing = sorted({s.converter.extra for s in plan.steps if s.converter and not s.converter.available()})
            if missing:
                fit.status = "not-installed"
                fit.reasons.append(f"pip install 'edgeconv[{','.join(missing)}]'")
        except EdgeconvError as e:
            fits.append(ProfileFit(profile.name, "no", [e.message + (f" ({e.hint})" if e.hint else "")]))
            continue
        avail = availability(profile)
        if not avail.usable:
            fit.status = "not-installed" if fit.status == "yes" else fit.status
            fit.reasons.append(avail.reason)
        elif avail.validation == "structural":
            fit.reasons.append(f"validation is structural here: {avail.reason}")
        elif avail.reason:  # e.g. "partial": a TensorRT engine cannot be built here, its ONNX is validated instead
            fit.reasons.append(avail.reason)
        try:
            resolve_shapes(source, profile, options)
        except EdgeconvError as e:
            if fit.status == "yes":
                fit.status = "needs-input-shape"
            fit.reasons.append(e.message + (f"; {e.hint}" if e.hint else ""))
        fits.append(fit)
    return fits


def inspect_model(path: Path, *, input_shapes: dict[str, tuple[int, ...]] | None = None,
                  targets: list[str] | None = None, fits: bool = True, trust_code: bool = False,
                  custom_objects: tuple[str, ...] = ()) -> ModelReport:
    """Everything `edgeconv inspect` shows. Raises InvalidInputError (exit 3) for files that are not models."""
    artifact = detect(Path(path))
    from edgeconv.manifest import shipped_size

    size = shipped_size(artifact)  # the size convert, batch and validate show: with the files it loads
    report = ModelReport(str(artifact.path), artifact.format.value, artifact.variant, size, [], [])
    shapes = input_shapes or {}
    source = None
    from edgeconv.artifact_readers import reader_for

    reader = reader_for(artifact.format)  # a converted artifact's format: its family's reader.py
    if artifact.format in (Format.TORCH, Format.KERAS, Format.SAVEDMODEL):
        source = inspect_source(artifact, report, shapes, trust_code, custom_objects)
    elif reader is not None and reader.inspects:
        reader.inspect(artifact, report)
    else:
        report.notes.append(f"{artifact.format} files are recognised but not looked into")
    if fits and artifact.format in (Format.ONNX, Format.TORCH, Format.KERAS, Format.SAVEDMODEL):
        report.profiles = profile_fits(artifact, shapes, targets, source, trust_code, custom_objects)
    return report
