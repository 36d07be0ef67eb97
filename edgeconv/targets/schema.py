"""Target profiles: TOML data → checked, typed Profile objects.

A profile file holds one or more `[profiles.NAME]` tables (the built-in family files in this folder do), or a single
profile at top level with `name = "..."` (handy for a user's own `--target ./my-target.toml`). A profile may
`extends = "other-profile"`; tables are merged key by key. Unknown keys are errors that name the key and its line.
See docs/profiles.md for every key.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeconv.errors import UsageError
from edgeconv.formats import Format

PRECISIONS = ("fp32", "fp16", "int8", "int16", "dynamic", "int4", "int16x8", "w8", "w8a8", "palettize4", "palettize6")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_FORMATS = ("qdq", "qoperator")
QUANT_STAGES = ("onnx", "converter", "none")
FUSIONS = ("gelu", "layernorm")  # edgeconv/fusions.py
DECOMPOSITIONS = ("maxpool_ceil", "reciprocal", "batchnorm", "neg", "stft")  # edgeconv/passes/: patterns a target's converter gets wrong, written otherwise
# [quantize.options] keys with a fixed set of values, checked when the profile loads (exit 2, with the line)
QUANTIZE_OPTION_CHOICES = {"backend_rules": ("", "qnn"), "score_on": ("ort", "target"),
                           "attention_op_set": ("measure", "default", "compute"), "bias_correction": ("measure", "off")}
ALL_OP_TYPES = "all"  # [quantize.options] op_types = "all": every op type in the graph (quantizers/onnx_qdq.py)

# A profile's name is a folder name (OUTDIR/<name>/, batch OUTPUT/<model>/<name>/): one path component, never one of
# the names edgeconv itself writes beside the targets' folders.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RESERVED_NAMES = frozenset({"manifest.json", "batch-summary.json", ".work", ".logs", ".edgeconv-batch.json",
                            "con", "prn", "aux", "nul"})
# Numbers a profile may hold: (low, high), inclusive, None for unbounded; every float must also be finite.
_BOUNDS: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("QuantScheme", "calibration_samples"): (1, 1_000_000),
    ("QuantScheme", "max_fallback"): (0, 100_000),
    ("ValidateSpec", "samples"): (1, 100_000),
    ("ValidateSpec", "task_samples"): (1, 1_000_000),
    ("Gate", "min_snr_db"): (None, None),
    ("Gate", "min_cosine"): (-1.0, 1.0),
    ("Gate", "max_abs"): (0.0, None),
    ("Gate", "min_top1_agreement"): (0.0, 1.0),
    ("Gate", "min_exact_match"): (0.0, 1.0),
    ("Gate", "max_task_drop"): (0.0, None),
}


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a profile (or batch model) name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if "\0" in name or "/" in name or "\\" in name or ".." in name:
        return "must be one folder name (no '/', '\\', '..' or NUL)"
    if name.lower() in RESERVED_NAMES:
        return "is a name edgeconv itself writes in the output folder"
    if not NAME_PATTERN.fullmatch(name):
        return "must be 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
    return None


def check_name(name: Any, source: str, text: str = "", what: str = "profile name") -> str:
    """A profile's name becomes a folder: refuse anything but one plain path component (exit 2)."""
    problem = name_problem(name)
    if problem is None:
        return name
    line = _line_of(text, name if isinstance(name, str) else "name")
    at = f"{source}:{line}" if line else source
    raise UsageError(f"{at}: {what} {name!r} {problem}", 'use e.g. name = "my-target" (it names the output folder)')


def _line_of(text: str, needle: str) -> int | None:
    pos = text.find(needle) if needle else -1
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def check_distinct_names(profiles: "list[Profile]") -> None:
    """Two targets of one run with the same name would write the same folder: the second would overwrite the first."""
    seen: dict[str, Profile] = {}
    for profile in profiles:
        other = seen.get(profile.name.lower())
        if other is not None:
            raise UsageError(f"two targets are named '{profile.name}' ({other.source_file or 'built-in'} and "
                             f"{profile.source_file or 'built-in'}): both would write OUTDIR/{profile.name}",
                             "give each target of a run its own name (name = \"...\" in the profile file, or drop one -t)")
        seen[profile.name.lower()] = profile


@dataclass(frozen=True)
class QuantScheme:
    """How the target wants the model quantized. `stage` says who applies it: edgeconv's ONNX quantizers ("onnx"), the
    target's own converter ("converter", e.g. TFLiteConverter / coremltools), or nobody ("none", fp32)."""

    precision: str = "fp32"
    stage: str = "none"
    activations: str = "uint8"  # uint8 | int8 | uint16 | int16 | float16 | float32
    weights: str = "int8"  # int8 | uint8 | int4 | float16
    per_channel: bool = True
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    method: str = "minmax"
    format: str = "qdq"
    keep_io_types: bool = True
    calibration_samples: int = 64
    exclude_op_types: tuple[str, ...] = ()
    fallback: str = "fp32"  # precision used for nodes kept out of quantization by accuracy-driven fallback
    max_fallback: int = 8
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate:
    """Accuracy gate: every bound that is set must hold for every output."""

    min_snr_db: float | None = None
    min_cosine: float | None = None
    max_abs: float | None = None
    min_top1_agreement: float | None = None
    min_exact_match: float | None = None  # integer / bool outputs (indices, masks); unset: min_top1_agreement applies
    max_task_drop: float | None = None  # task metric (task_metrics.py) of the source minus the artifact's, in points


@dataclass(frozen=True)
class ValidateSpec:
    runtime: str = "onnxruntime"
    samples: int = 16
    task_samples: int = 1000  # labelled --eval data (or --metric): up to this many samples, so a task metric means something
    gate: Gate = field(default_factory=Gate)


@dataclass(frozen=True)
class NormaliseSpec:
    """Extra graph rewrites the target needs before quantization, on top of the normalisation every ONNX graph gets:
    `fuse` names ONNX Runtime fusions (edgeconv/fusions.py), e.g. "gelu" for the Erf-GELU the Hexagon HTP refuses."""

    fuse: tuple[str, ...] = ()
    decompose: tuple[str, ...] = ()  # e.g. "maxpool_ceil" (passes/maxpool_ceil.py) and "neg" (passes/neg_mul.py) for
    # the TFLite profiles, "reciprocal" (passes/reciprocal_div.py) and "batchnorm" (passes/batchnorm_affine.py) for the
    # Hexagon ones, "stft" (passes/stft_conv.py) for both


@dataclass(frozen=True)
class ShapePolicy:
    static: bool = False  # NPUs need every dim fixed
    defaults: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class OpsetRange:
    """The ONNX opsets the target's converter / runtime accepts, and the one edgeconv exports at (`preferred`).

    A model inside [min, max] is kept at its own opset (what the exporter wrote); below `min` it is upgraded to
    `preferred`; above `max` it is down-converted to `max`. In a profile: `opset = { min = 13, max = 23, preferred = 18 }`,
    or `opset = 17` for exactly one opset."""

    min: int = 13
    max: int = 23
    preferred: int = 18

    def __post_init__(self) -> None:
        if not (1 <= self.min <= self.preferred <= self.max):
            raise ValueError(f"opset needs 1 <= min <= preferred <= max, got min={self.min}, preferred={self.preferred}, "
                             f"max={self.max}")

    @classmethod
    def exactly(cls, opset: int) -> "OpsetRange":
        return cls(opset, opset, opset)

    def __str__(self) -> str:
        if self.min == self.max:
            return str(self.min)
        return f"{self.min}-{self.max} (exports at {self.preferred})"

    def target_for(self, opset: int) -> int:
        """The opset a model at `opset` is brought to for this target."""
        if opset < self.min:
            return self.preferred
        return min(opset, self.max)


@dataclass(frozen=True)
class Profile:
    name: str
    family: str
    description: str
    produces: tuple[Format, ...]
    opset: OpsetRange = field(default_factory=OpsetRange)
    quantize: QuantScheme = field(default_factory=QuantScheme)
    shapes: ShapePolicy = field(default_factory=ShapePolicy)
    layout: str = "source"
    normalise: NormaliseSpec = field(default_factory=NormaliseSpec)
    validate: ValidateSpec = field(default_factory=ValidateSpec)
    compiler: dict[str, Any] = field(default_factory=dict)  # passed to the target's compiler as-is (its own options)
    source_file: str = ""

    @property
    def primary_format(self) -> Format:
        return self.produces[0]


_SECTIONS = {"quantize": QuantScheme, "validate": ValidateSpec, "shapes": ShapePolicy, "normalise": NormaliseSpec}
_TOP_KEYS = {f.name for f in fields(Profile)} - {"source_file", "family", "name"} | {"extends", "name", "family"}


def _key_line(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*(\"?{re.escape(key)}\"?[ \t]*=|\[[^\]]*\b{re.escape(key)}\b[^\]]*\])", re.MULTILINE)
    m = pattern.search(text) or re.search(rf"[{{,]\s*\"?{re.escape(key)}\"?\s*=", text)  # or inside an inline table
    return text.count("\n", 0, m.start()) + 1 if m else None


def _bad_key(source: str, text: str, where: str, key: str, allowed: set[str]) -> UsageError:
    line = _key_line(text, key)
    at = f"{source}:{line}" if line else source
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return UsageError(f"{at}: unknown key '{key}' in {where}", f"{hint}allowed: {', '.join(sorted(allowed))}")


def _check_choice(source: str, text: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        line = _key_line(text, key)
        at = f"{source}:{line}" if line else source
        raise UsageError(f"{at}: {key} = {value!r} is not one of {', '.join(choices)}", "see docs/profiles.md")


_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                                         "dict": (dict,), "tuple": (list, tuple), "Gate": (dict,)}


def _check_op_types(source: str, text: str, value: Any) -> None:
    """[quantize.options] op_types: a list of op type names, or "all"."""
    if value == ALL_OP_TYPES or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return
    line = _key_line(text, "op_types")
    at = f"{source}:{line}" if line else source
    raise UsageError(f"{at}: op_types = {value!r} in [quantize.options] must be a list of op types or "
                     f'"{ALL_OP_TYPES}"', f'e.g. op_types = ["Conv", "MatMul"], or op_types = "{ALL_OP_TYPES}" (every '
                     "op type in the graph); see docs/quantization.md")


def _check_type(cls: type, key: str, value: Any, source: str, text: str, where: str) -> None:
    """A value of the wrong TOML type (samples = "many") is a usage error naming the key and its line."""
    annotation = next((str(f.type) for f in fields(cls) if f.name == key), "")
    optional = "None" in annotation
    base = annotation.replace(" | None", "").split("[")[0].strip()
    kinds = _SCALARS.get(base)
    if kinds is None or (optional and value is None):
        return
    wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if wrong:
        line = _key_line(text, key)
        at = f"{source}:{line}" if line else source
        want = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "dict": "a table", "tuple": "a list", "Gate": "a table"}[base]
        raise UsageError(f"{at}: {key} = {value!r} in {where} must be {want}", "see docs/profiles.md")
    _check_range(cls, key, value, source, text, where)


def _check_range(cls: type, key: str, value: Any, source: str, text: str, where: str) -> None:
    """NaN / inf anywhere, and numbers outside a key's range (samples = -3 would turn validation off), are exit 2; so are
    control characters in a string (a description holding terminal escape codes or NUL would reach tables and logs)."""
    if isinstance(value, str) and any((ord(c) < 32 and c not in "\n\t") or c == "\x7f" for c in value):
        line = _key_line(text, key)
        at = f"{source}:{line}" if line else source
        raise UsageError(f"{at}: {key} = {value!r} in {where} holds control characters", "remove them")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = _BOUNDS.get((cls.__name__, key), (None, None))
    bad = isinstance(value, float) and not math.isfinite(value)
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    if bad:
        line = _key_line(text, key)
        at = f"{source}:{line}" if line else source
        span = ("a finite number" if low is None and high is None else
                f"a number >= {low}" if high is None else f"a number <= {high}" if low is None else
                f"between {low} and {high}")
        raise UsageError(f"{at}: {key} = {value!r} in {where} must be {span}", "see docs/profiles.md")


def _build_section(cls: type, data: dict[str, Any], source: str, text: str, where: str) -> Any:
    allowed = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: {where} must be a table, not {data!r}", "see docs/profiles.md")
    for key, value in data.items():
        if key not in allowed:
            raise _bad_key(source, text, where, key, allowed)
        _check_type(cls, key, value, source, text, where)
        if cls is ValidateSpec and key == "gate":
            kwargs[key] = _build_section(Gate, value, source, text, f"{where}.gate")
        elif cls is ShapePolicy and key == "defaults":
            try:
                kwargs[key] = {name: tuple(int(d) for d in dims) for name, dims in value.items()}
                from edgeconv.context import check_dims

                for name, dims in kwargs[key].items():
                    check_dims(dims, f"shapes.defaults.{name}")
            except (TypeError, ValueError, OverflowError) as e:
                raise UsageError(f"{source}:{_key_line(text, 'defaults')}: bad shapes.defaults {value!r}",
                                 'use e.g. defaults = { image = [1, 3, 224, 224] }') from e
            except UsageError as e:
                raise UsageError(f"{source}:{_key_line(text, 'defaults')}: {e.message}", e.hint) from e
        elif key in ("exclude_op_types", "fuse", "decompose"):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise UsageError(f"{source}: bad {where}: {e}", "see docs/profiles.md") from e
    if cls is QuantScheme:
        _check_choice(source, text, "precision", obj.precision, PRECISIONS)
        _check_choice(source, text, "method", obj.method, CALIBRATION_METHODS)
        _check_choice(source, text, "format", obj.format, QUANT_FORMATS)
        _check_choice(source, text, "stage", obj.stage, QUANT_STAGES)
        _check_op_types(source, text, obj.options.get("op_types", []))
        for key, choices in QUANTIZE_OPTION_CHOICES.items():  # quantizers/onnx_qdq.py, target_scoring.py, attention_op_set.py, bias_correction.py
            if key in obj.options:
                _check_choice(source, text, key, obj.options[key], choices)
    if cls is NormaliseSpec:
        for name in obj.fuse:
            _check_choice(source, text, "fuse", name, FUSIONS)
        for name in obj.decompose:
            _check_choice(source, text, "decompose", name, DECOMPOSITIONS)
    return obj


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("defaults", "opset"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class RawProfile:
    """A profile table as read from TOML, before `extends` is resolved."""

    name: str
    data: dict[str, Any]
    source: str
    text: str
    family: str


def read_profile_file(path: Path) -> list[RawProfile]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read profile file {path}: {e}", "pass a readable TOML file") from e
    doc = load_toml(text, source)
    family = doc.pop("family", path.stem)
    if not isinstance(family, str):
        raise UsageError(f"{source}:{_key_line(text, 'family')}: family = {family!r} must be a string", "see docs/profiles.md")
    doc.pop("doc", None)
    if "profiles" in doc:
        tables = doc.pop("profiles")
        if doc:
            raise _bad_key(source, text, "the file's top level", next(iter(doc)), {"family", "doc", "profiles"})
        if not isinstance(tables, dict) or not tables or not all(isinstance(t, dict) for t in tables.values()):
            raise UsageError(f"{source}:{_key_line(text, 'profiles')}: `profiles` must hold one [profiles.NAME] table "
                             "per profile", "see docs/profiles.md")
        return [RawProfile(check_name(name, source, text), dict(data), source, text, family)
                for name, data in tables.items()]
    if "name" not in doc:
        raise UsageError(
            f"{source}: a profile file needs `name = \"...\"` or [profiles.NAME] tables", "see docs/profiles.md"
        )
    name = doc.pop("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{source}:{_key_line(text, 'name')}: name = {name!r} must be a non-empty string",
                         "e.g. name = \"my-target\"")
    return [RawProfile(check_name(name, source, text), doc, source, text, family)]


def load_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads, with nesting so deep that the parser runs out of stack (RecursionError) a usage error too."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{source}: invalid TOML: {e}", "fix the syntax at the line named") from e
    except RecursionError:
        doc = None
    if doc is None or too_deep(doc):
        raise UsageError(f"{source}: arrays or tables nested more than {MAX_DEPTH} deep", "flatten the nesting")
    return doc


MAX_DEPTH = 32


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists / tables nest deeper than `limit` (walked without recursion)."""
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            todo += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, (list, tuple)):
            todo += [(v, depth + 1) for v in item]
    return False


def build_profile(raw: RawProfile, known: dict[str, RawProfile]) -> Profile:
    """Resolve `extends` (key-by-key merge, child wins) and check every key."""
    data = _flatten_extends(raw, known, ())
    family = data.pop("family", raw.family)
    return _profile_from_data(raw.name, family, data, raw.source, raw.text)


def _flatten_extends(raw: RawProfile, known: dict[str, RawProfile], seen: tuple[str, ...]) -> dict[str, Any]:
    data = dict(raw.data)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise UsageError(f"{raw.source}:{_key_line(raw.text, 'extends')}: extends = {parent!r} must be a profile name",
                         "e.g. extends = \"onnx\"")
    if parent in seen or parent == raw.name:
        raise UsageError(f"{raw.source}: profile '{raw.name}' extends itself through '{parent}'", "remove the cycle")
    if parent not in known:
        close = difflib.get_close_matches(parent, list(known), n=3)
        raise UsageError(
            f"{raw.source}:{_key_line(raw.text, 'extends')}: profile '{raw.name}' extends unknown profile '{parent}'",
            f"did you mean {', '.join(close)}?" if close else "run `edgeconv targets` for the list",
        )
    base = _flatten_extends(known[parent], known, (*seen, raw.name))
    if "family" not in data and known[parent].source != raw.source:
        base.setdefault("family", known[parent].family)
    return _merge(base, data)


def _profile_from_data(name: str, family: str, data: dict[str, Any], source: str, text: str) -> Profile:
    kwargs: dict[str, Any] = {"name": name, "family": family, "source_file": source}
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise _bad_key(source, text, f"profile '{name}'", key, _TOP_KEYS)
        if key not in _SECTIONS and key != "produces":
            _check_type(Profile, key, value, source, text, f"profile '{name}'")
        if key in _SECTIONS:
            kwargs[key] = _build_section(_SECTIONS[key], value, source, text, f"[{key}] of '{name}'")
            if key == "quantize":  # [quantize.options]: edgeconv's keys typed (targets/quantize_options.py)
                from edgeconv.targets.family_options import Table
                from edgeconv.targets.quantize_options import parse_quantize_options

                parse_quantize_options(kwargs[key].options, Table("quantize.options", name, source, text))
        elif key == "produces":
            produced = [value] if isinstance(value, str) else value
            if not isinstance(produced, list) or not all(isinstance(p, str) for p in produced):
                raise UsageError(f"{source}:{_key_line(text, 'produces')}: produces = {value!r} must be a list of formats",
                                 f"use e.g. produces = [\"onnx\"]; formats: {', '.join(f.value for f in Format)}")
            try:
                kwargs[key] = tuple(Format(p) for p in produced)
            except ValueError as e:
                valid = ", ".join(f.value for f in Format)
                raise UsageError(f"{source}:{_key_line(text, 'produces')}: {e} in profile '{name}'", f"use {valid}") from e
        elif key == "compiler":  # the family's options class (targets/<family>/options.py)
            from edgeconv.targets.family_options import Table, check_compiler

            kwargs[key] = check_compiler(family, value, Table("compiler", name, source, text))
        elif key == "opset":
            kwargs[key] = _opset_range(value, source, text, name)
        else:
            kwargs[key] = value
    if "produces" not in kwargs or not kwargs["produces"]:
        raise UsageError(f"{source}: profile '{name}' has no `produces`", "add e.g. produces = [\"onnx\"]")
    kwargs.setdefault("description", "")
    check_name(kwargs["name"], source, text)  # `name` in the data (a file's [profiles.X] table, --set name=...) wins
    try:
        return Profile(**kwargs)
    except TypeError as e:
        raise UsageError(f"{source}: bad profile '{name}': {e}", "see docs/profiles.md") from e


def _opset_range(value: Any, source: str, text: str, name: str) -> OpsetRange:
    """`opset = 17` (exactly one opset) or `opset = { min = 13, max = 23, preferred = 18 }` (keys optional)."""
    at = f"{source}:{_key_line(text, 'opset')}" if _key_line(text, "opset") else source
    hint = "use e.g. opset = { min = 13, max = 23, preferred = 18 }, or opset = 17 for exactly one; see docs/profiles.md"
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise UsageError(f"{at}: opset = {value!r} in profile '{name}' must be an integer or a table", hint)
    data = {"min": value, "max": value, "preferred": value} if isinstance(value, int) else dict(value)
    allowed = {f.name for f in fields(OpsetRange)}
    for key, item in data.items():
        if key not in allowed:
            raise _bad_key(source, text, f"opset of '{name}'", key, allowed)
        if isinstance(item, bool) or not isinstance(item, int):
            raise UsageError(f"{at}: opset.{key} = {item!r} in profile '{name}' must be an integer", hint)
    if isinstance(value, dict):  # a partial table: the missing keys default around the given ones
        default = OpsetRange()
        given = list(data.values())
        data.setdefault("min", min([default.min, *given]))
        data.setdefault("max", max([default.max, *given]))
        data.setdefault("preferred", max(data["min"], min(default.preferred, data["max"])))
    try:
        return OpsetRange(**data)
    except ValueError as e:
        raise UsageError(f"{at}: bad opset in profile '{name}': {e}", hint) from e


def apply_overrides(profile: Profile, overrides: list[str]) -> Profile:
    """`--set quantize.method=entropy` style overrides (values parsed as TOML; bare words as strings)."""
    if not overrides:
        return profile
    raw = _profile_to_dict(profile)
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"bad --set {item!r}", "use --set section.key=value, e.g. --set quantize.method=entropy")
        dotted, value_text = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {value_text}")["v"]
        except tomllib.TOMLDecodeError:
            value = value_text
        except RecursionError:
            value = None
        if value is None or too_deep(value):
            raise UsageError(f"bad --set {dotted}=...: the value is nested more than {MAX_DEPTH} deep",
                             "see docs/profiles.md")
        node = raw
        *parents, leaf = dotted.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"bad --set {item!r}: {part} is not a table", "see docs/profiles.md")
        node[leaf] = value
    return _profile_from_data(profile.name, profile.family, raw, "--set", "\n".join(overrides))


def _profile_to_dict(profile: Profile) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(profile)
    for key in ("name", "family", "source_file"):
        data.pop(key)
    data["produces"] = [f.value for f in profile.produces]
    return data
