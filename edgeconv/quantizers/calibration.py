"""Sample data for calibration and validation, streamed one sample at a time (memory stays bounded).

A folder of `.npy` files (single-input models) or `.npz` files (keys = input names), one sample per file, in the SOURCE
model's layout; or a folder of images (single-input models), decoded one at a time with a preprocessing spec
(quantizers/preprocess.py: `--preprocess` or the profile's `quantize.preprocess`, missing keys taken from the input
shape). `random` gives seeded random samples, only when asked, and the manifest records it. With no data,
validation uses generated samples (seeded, recorded as such); calibration never silently does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import TensorSpec
from edgeconv.quantizers.preprocess import (
    Preprocess,
    assumed_warning,
    fit_to_input,
    image_files,
    load_image,
    parse_preprocess,
)

if TYPE_CHECKING:
    from edgeconv.context import StepContext

SAMPLE_SUFFIXES = (".npy", ".npz")
RANDOM = "random"


@dataclass(frozen=True)
class SampleSet:
    """An iterable of feeds ({input name: array}), re-iterable, reading files lazily."""

    kind: str  # "files" | "images" | "random" | "generated"
    inputs: tuple[TensorSpec, ...]
    count: int
    files: tuple[Path, ...] = ()
    seed: int = 0
    path: Path | None = None
    preprocess: Preprocess | None = None  # images only
    classes: tuple[str, ...] = ()  # images in a folder per class (eval_data.py): class names in class-id order

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.kind == "files":
            for file in self.files[: self.count]:
                yield read_sample(file, self.inputs)
        elif self.kind == "images":
            assert self.preprocess is not None
            for file in self.files[: self.count]:
                yield {self.inputs[0].name: conform(load_image(file, self.preprocess), self.inputs[0], file)}
        else:
            rng = np.random.default_rng(self.seed)
            for _ in range(self.count):
                yield {s.name: _random_array(s, rng) for s in self.inputs}

    def __len__(self) -> int:
        return self.count

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "count": self.count, "path": str(self.path) if self.path else None}
        if self.preprocess is not None:
            out["preprocess"] = self.preprocess.to_json()
        if self.classes:
            out["classes"] = len(self.classes)
        return out


def _concrete_shape(spec: TensorSpec) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)


def _random_array(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    shape = _concrete_shape(spec)
    if spec.dtype.startswith("float"):
        return rng.standard_normal(shape).astype(spec.dtype)
    if spec.dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 8, shape).astype(spec.dtype)


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES and p.is_file())


def open_samples(
    spec: str | None, inputs: tuple[TensorSpec, ...], limit: int, *, seed: int = 0, purpose: str = "calibration",
    preprocess: str | dict[str, object] | None = None,
) -> SampleSet:
    """`spec` is a folder, "random", or None. For calibration, None is an error (never silently random).
    At most `limit` (at least 1) samples are used; files are read lazily while iterating."""
    if spec is None:
        if purpose == "calibration":
            raise InvalidInputError("this target quantizes with calibration data, and none was given",
                                    "pass --calib DIR (.npy/.npz samples, or images), or --calib random to accept random data")
        return SampleSet("generated", inputs, max(1, limit), seed=seed)
    if spec == RANDOM:
        return SampleSet("random", inputs, max(1, limit), seed=seed)
    folder = Path(spec)
    if not folder.exists():
        raise InvalidInputError(f"{purpose} data {folder} does not exist", "pass a folder of .npy/.npz samples")
    if not folder.is_dir():
        raise InvalidInputError(f"{purpose} data {folder} is not a folder", "pass a folder of .npy/.npz samples, one per file")
    files = sample_files(folder)
    if not files:
        images = image_files(folder)
        if images:
            return _image_samples(folder, images, inputs, limit, seed, purpose, preprocess)
        from edgeconv.eval_data import class_images, class_names

        classes = class_names(folder)  # ImageNet layout: a folder per class
        if classes:
            return _image_samples(folder, class_images(folder, classes), inputs, limit, seed, purpose, preprocess,
                                  tuple(classes))
        raise InvalidInputError(f"{purpose} folder {folder} has no .npy/.npz samples or images",
                                "put one sample per file in it (.npy/.npz), or image files with --preprocess")
    chosen = tuple(files[: max(1, limit)])
    for file in chosen[:1]:  # fail fast on the first file; the rest are checked as they stream
        read_sample(file, inputs)
    return SampleSet("files", inputs, len(chosen), chosen, seed, folder)


def read_sample(file: Path, inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):  # members are read lazily: a damaged one fails here
            with loaded:
                loaded = {k: loaded[k] for k in loaded.files}
    except Exception as e:
        raise InvalidInputError(f"cannot read sample {file}: {type(e).__name__}: {first_line(e, 200)}",
                                "save samples with numpy.save / numpy.savez") from e
    if isinstance(loaded, dict):
        arrays = loaded
        odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
        if odd:  # np.load hands members not saved by numpy (`x.txt` zipped in) back as raw bytes
            raise InvalidInputError(f"sample {file}: member {odd[0]!r} is not a .npy array",
                                    "save samples with numpy.savez (every member one array)")
        missing = [s.name for s in inputs if s.name not in arrays]
        if missing:
            raise InvalidInputError(f"sample {file} lacks input(s) {', '.join(missing)} (has {', '.join(arrays)})",
                                    f"save it with numpy.savez(path, {inputs[0].name}=...)")
    else:
        if len(inputs) != 1:
            raise InvalidInputError(f"sample {file} is a single .npy array but the model has {len(inputs)} inputs",
                                    "use .npz files with one key per input name")
        arrays = {inputs[0].name: loaded}
    return {s.name: conform(arrays[s.name], s, file) for s in inputs}


def conform(array: np.ndarray, spec: TensorSpec, file: Path | str) -> np.ndarray:
    """Check a sample against the input spec; add a missing batch dim; cast float64 → float32."""
    want = spec.shape
    if want and array.ndim == len(want) - 1 and not (isinstance(want[0], int) and want[0] > 1):  # batch dim left out
        array = array[None, ...]
    if want and (array.ndim != len(want) or any(isinstance(w, int) and w > 0 and w != g for w, g in zip(want, array.shape))):
        raise InvalidInputError(
            f"sample {file}: input {spec.name} has shape {tuple(array.shape)}, expected {spec.shape_str()}",
            "samples must be in the source model's layout and shape",
        )
    kind_ok = (array.dtype.kind == "f") == spec.dtype.startswith(("float", "bfloat")) and array.dtype.kind in "biuf"
    if not kind_ok:  # strings, objects, complex numbers: never cast (a string array for an int64 input)
        raise InvalidInputError(f"sample {file}: input {spec.name} has dtype {array.dtype}, expected {spec.dtype}",
                                f"save it as {spec.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"sample {file}: input {spec.name} contains NaN or Inf", "fix or remove this sample")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.ascontiguousarray(array.astype(spec.dtype, copy=False))
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"sample {file}: input {spec.name} cannot be read as {spec.dtype}: {e}",
                                f"save it as {spec.dtype}") from e
    if out.dtype.kind == "f" and not np.isfinite(out).all():  # float64 values beyond float32's range became inf
        raise InvalidInputError(f"sample {file}: input {spec.name} has values beyond the range of {spec.dtype} "
                                f"(largest magnitude {float(np.abs(array).max()):g})", f"scale the sample into {spec.dtype}'s range")
    if out.dtype.kind in "iu" and array.dtype.kind in "iuf" and array.size:
        info = np.iinfo(out.dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInputError(f"sample {file}: input {spec.name} has values outside {spec.dtype}'s range",
                                    f"save it as {spec.dtype}")
    return out


def _image_samples(folder: Path, images: list[Path], inputs: tuple[TensorSpec, ...], limit: int, seed: int,
                   purpose: str, preprocess: str | dict[str, object] | None, classes: tuple[str, ...] = ()) -> SampleSet:
    if len(inputs) != 1:
        raise InvalidInputError(f"{purpose} folder {folder} holds images but the model has {len(inputs)} inputs",
                                "use .npz files with one key per input name")
    pp = fit_to_input(parse_preprocess(preprocess), inputs[0].shape)
    chosen = tuple(images[: max(1, limit)])
    samples = SampleSet("images", inputs, len(chosen), chosen, seed, folder, pp, classes)
    next(iter(samples))  # fail fast on the first image (shape / dtype against the input)
    return samples


def preprocess_spec(ctx: "StepContext") -> str | dict[str, object] | None:
    """--preprocess wins over the profile's quantize.preprocess."""
    return ctx.options.preprocess or ctx.profile.quantize.options.get("preprocess") or None


def samples_for(ctx: "StepContext", purpose: str = "calibration", limit: int | None = None) -> SampleSet:
    """The calibration samples of a step (--calib, capped at the profile's calibration_samples). `--calib random` is
    accepted with a warning that the manifest records."""
    samples = open_samples(ctx.options.calib, ctx.source.inputs, limit or ctx.profile.quantize.calibration_samples,
                           seed=ctx.options.seed, purpose=purpose, preprocess=preprocess_spec(ctx))
    if purpose == "calibration":
        check_not_constant(samples)
    warn_assumed_preprocess(samples, ctx)
    if samples.kind == RANDOM:
        ctx.warn("calibrating with RANDOM data (--calib random): quantization ranges will not match real inputs")
        ctx.notes["calibration_warning"] = "random calibration data (--calib random)"
    ctx.notes["calibration"] = samples.describe()
    return samples


def warn_assumed_preprocess(samples: SampleSet, ctx: "StepContext") -> None:
    """Images read with no preprocessing spec: say what was assumed (preprocess.assumed_warning), once in each target's
    warnings (the manifest) and once on screen per run (StepContext.warn shows a message once)."""
    if samples.kind != "images" or samples.preprocess is None:
        return
    message = assumed_warning(samples.preprocess)
    if message and message not in ctx.warnings:
        ctx.warn(message)


def check_not_constant(samples: SampleSet) -> None:
    """Calibration data in which every value of an input is the same (zero-filled files, blank images) gives that input
    a zero quantization range (scale 0): exit 3 naming the input. Stops reading at the first sample where every float
    input varies (usually the first)."""
    if samples.kind not in ("files", "images"):
        return
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for feeds in samples:
        for name, array in feeds.items():
            if array.size and array.dtype.kind == "f":
                lo[name] = min(lo.get(name, np.inf), float(array.min()))
                hi[name] = max(hi.get(name, -np.inf), float(array.max()))
        if lo and all(hi[n] > lo[n] for n in lo):
            return
    constant = [n for n in lo if hi[n] == lo[n]]
    if constant:
        name = constant[0]
        raise InvalidInputError(
            f"calibration data for input {name} is constant: every value of the {len(samples)} sample(s) in "
            f"{samples.path} is {lo[name]:g}, which gives a zero quantization range (scale 0)",
            "calibrate on real, varied inputs (the same data the model will see)",
            details={"constant_inputs": constant})
