"""What a run knows: the user's options (ConvertOptions) and, per step, the StepContext handed to plugins."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeconv.errors import UsageError
from edgeconv.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from edgeconv.sources import SourceModel
    from edgeconv.targets.schema import Profile


@dataclass(frozen=True)
class ShapeRange:
    """A TensorRT-style optimisation profile for one input: min / opt / max dims."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class ConvertOptions:
    """Everything the user chose on the command line (or in edgeconv.toml), independent of the target."""

    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    calib: str | None = None  # a folder of .npy/.npz/images, or "random"
    eval: str | None = None
    metric: str | None = None  # --metric: a built-in task metric (top1, miou, detection...) or pkg.module:function
    preprocess: str | None = None  # image preprocessing spec, see quantizers/calibration.py
    model_factory: str | None = None  # "pkg.module:function"
    weights: Path | None = None  # state_dict for the factory's module (loaded with weights_only=True)
    custom_objects: tuple[str, ...] = ()  # --custom-objects: modules imported before a Keras model loads (its classes)
    trust_code: bool = False  # --trust-code (alias --trust-pickle): load files that run code (pickles, Lambda layers, file ops)
    overrides: tuple[str, ...] = ()  # --set section.key=value
    soc: str | None = None  # Hexagon: Snapdragon part
    allow_cpu_fallback: bool = False  # NPU targets: accept nodes that would not run on the accelerator
    shape_ranges: dict[str, ShapeRange] = field(default_factory=dict)  # TensorRT dynamic shapes
    require_engine: bool = False  # TensorRT: exit 4 when no GPU can build the engine
    max_fallback: int | None = None  # accuracy-driven mixed precision budget (nodes)
    report: bool = False  # per-layer accuracy report in the manifest
    keep_work: bool = False  # keep OUTDIR/.work (intermediate files of every stage)
    no_cache: bool = False  # neither reuse nor store step outputs in the stage cache (stage_cache.py)
    output_names: tuple[str, ...] = ()  # --output-names: names for a PyTorch model's outputs (torch.onnx writes getitem_3)
    keep_going: bool = False  # a failing target does not discard the others (make -k); exit with the worst code
    seed: int = 0


def parse_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x") if d != "")
    except ValueError as e:
        raise UsageError(f"bad dims {text!r}", "use e.g. 1x3x224x224") from e
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"bad dims {text!r}: every dim must be a positive integer", "use e.g. 1x3x224x224")
    return check_dims(dims, text)


MAX_DIM = 2**31 - 1  # ONNX / numpy dims are int64, most runtimes index with int32
MAX_INPUT_ELEMENTS = 2**28  # one sample of one input (1 GiB as float32): larger shapes are a typo, refused before allocating


def check_dims(dims: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Dims that cannot be allocated (one over 2**31 - 1, or more than MAX_INPUT_ELEMENTS elements in all): exit 2."""
    if any(d > MAX_DIM for d in dims):
        raise UsageError(f"bad dims {what!r}: a dim is larger than {MAX_DIM}", "use e.g. 1x3x224x224")
    elements = math.prod(dims)
    if elements > MAX_INPUT_ELEMENTS:
        raise UsageError(f"shape {what!r} has {elements:,} elements per sample, more than edgeconv allows "
                         f"({MAX_INPUT_ELEMENTS:,}, 1 GiB of float32)", "check the dims (e.g. 1x3x224x224, not 1x3x224224)")
    return dims


def parse_input_shapes(items: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`--input-shape NAME=1x3x224x224` (repeatable) → {NAME: dims}."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"bad --input-shape {item!r}", "use --input-shape NAME=1x3x224x224")
        name, dims = item.rsplit("=", 1)
        if not name:
            raise UsageError(f"bad --input-shape {item!r}: no input name", "use --input-shape NAME=1x3x224x224")
        out[name] = parse_dims(dims)
    return out


@dataclass(frozen=True)
class QuantizeResult:
    """What the quantize step leaves for the later stages of its target (the manifest's copy is notes.quantize): the
    per-layer rows of --report, worst first, which a failed gate names; and what the accuracy-driven mixed-precision
    search did (FallbackResult.to_json()), which a failed gate's error summarises."""

    layers: tuple[dict[str, Any], ...] = ()
    fallback: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "fallback": self.fallback}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "QuantizeResult":
        """From to_json(), or from a manifest's notes.quantize (an artifact validated outside its conversion)."""
        return cls(tuple(data.get("layers") or ()), data.get("fallback"))


@dataclass
class StepContext:
    """Handed to every converter / quantizer / runtime call. `work_dir` is this step's own folder."""

    work_dir: Path
    profile: "Profile"
    options: ConvertOptions
    source: "SourceModel"
    reporter: Reporter = field(default_factory=NullReporter)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # structured facts for the manifest (per target)
    shown: set[str] = field(default_factory=set)  # warnings already on screen in this run (shared by its targets)
    quantized: QuantizeResult | None = None  # set by the quantize step (pipeline.py hands it to the target's later stages)

    def warn(self, message: str) -> None:
        """Into this target's warnings (the manifest) always; on screen once per run (a step shared by several
        targets, or a cached one, replays its warnings into each)."""
        self.warnings.append(message)
        if message not in self.shown:
            self.shown.add(message)
            self.reporter.warn(message)

    def for_step(self, work_dir: Path) -> "StepContext":
        work_dir.mkdir(parents=True, exist_ok=True)
        return StepContext(work_dir, self.profile, self.options, self.source, self.reporter, self.warnings, self.notes,
                           self.shown)
