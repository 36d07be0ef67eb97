"""Project configuration: `edgeconv.toml`, or `[tool.edgeconv]` in pyproject.toml (used by `edgeconv batch`).

    output = "out"                       # OUTPUT/<model>/<target>/ is one `edgeconv convert` output folder
    targets = ["onnx", "onnx-fp16"]      # default targets of every model
    jobs = 2                             # parallel conversions (-j overrides)

    [defaults]                           # options every model gets (a model's own keys win)
    eval = "data/eval"

    [models.digits]
    source = "digits_cnn.pt2"            # paths are relative to the config file's folder
    targets = ["onnx", "tflite-int8"]
    input_shapes = { image = [1, 1, 8, 8] }   # or "1x1x8x8"
    calib = "digits_calib"
    set = ["validate.samples=8"]

Models may also be an array `[[models]]` with a `name` key (default: the source file's stem). Unknown keys are errors
that name the closest known key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import UsageError

CONFIG_NAME = "edgeconv.toml"
TOP_KEYS = {"output", "targets", "jobs", "defaults", "models"}

# model key → (convert flag, kind); kind: path | str | bool | int | list | shapes | ranges
MODEL_KEYS: dict[str, tuple[str, str]] = {
    "calib": ("--calib", "data"),
    "eval": ("--eval", "data"),
    "metric": ("--metric", "str"),
    "preprocess": ("--preprocess", "str"),
    "model": ("--model", "str"),
    "weights": ("--weights", "path"),
    "trust_code": ("--trust-code", "bool"),
    "trust_pickle": ("--trust-code", "bool"),  # the old name, same meaning
    "set": ("--set", "list"),
    "soc": ("--soc", "str"),
    "allow_cpu_fallback": ("--allow-cpu-fallback", "bool"),
    "require_engine": ("--require-engine", "bool"),
    "max_fallback": ("--max-fallback", "int"),
    "report": ("--report", "bool"),
    "keep_work": ("--keep-work", "bool"),
    "input_shapes": ("--input-shape", "shapes"),
    "shape_ranges": ("--shape-range", "ranges"),
}
ENTRY_KEYS = {"name", "source", "targets", *MODEL_KEYS}


def _unknown(key: str, allowed: set[str], where: str, path: Path) -> UsageError:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return UsageError(f"{path}: unknown key '{key}' in {where}", f"{hint}allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: Path | None
    targets: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def input_paths(self) -> list[Path]:
        """Files whose content decides the result (hashed by the batch cache)."""
        paths = [p for p in (self.source, self.options.get("weights")) if isinstance(p, Path)]
        for key in ("calib", "eval"):
            value = self.options.get(key)
            if isinstance(value, Path):
                paths.append(value)
        return paths

    def convert_args(self, target: str, outdir: Path) -> list[str]:
        """The `edgeconv convert` command line for one target (paths absolute)."""
        args = ["convert"] + ([str(self.source)] if self.source is not None else []) + ["--target", target, "-o", str(outdir)]
        for key, value in self.options.items():
            flag, kind = MODEL_KEYS[key]
            if kind == "bool":
                if value:
                    args.append(flag)
            elif kind == "list":
                for item in value:
                    args += [flag, str(item)]
            elif kind == "shapes":
                for name, dims in value.items():
                    args += [flag, f"{name}={dims if isinstance(dims, str) else 'x'.join(str(int(d)) for d in dims)}"]
            elif kind == "ranges":
                for name, spec in value.items():
                    args += [flag, f"{name}={spec}"]
            else:
                args += [flag, str(value)]
        return args


@dataclass(frozen=True)
class BatchConfig:
    path: Path  # the file read
    root: Path  # its folder: relative paths start here, conversions run here
    output: Path
    jobs: int
    models: tuple[ModelEntry, ...]

    def pairs(self) -> list[tuple[ModelEntry, str]]:
        return [(m, t) for m in self.models for t in m.targets]


def find_config(start: Path | None = None) -> Path:
    """./edgeconv.toml, else ./pyproject.toml when it has [tool.edgeconv]."""
    folder = (start or Path.cwd()).resolve()
    if (folder / CONFIG_NAME).is_file():
        return folder / CONFIG_NAME
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            if "edgeconv" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}):
                return pyproject
        except (tomllib.TOMLDecodeError, OSError):
            pass
    raise UsageError(f"no {CONFIG_NAME} (or [tool.edgeconv] in pyproject.toml) in {folder}",
                     "write one (see docs/cli.md#edgeconv-batch) or pass its path: edgeconv batch path/to/edgeconv.toml")


_KIND_WANT = {"str": "a string", "bool": "true or false", "int": "an integer", "list": "a list of strings",
              "shapes": "a table of shapes", "ranges": "a table of shape ranges"}


def _check_kind(value: Any, kind: str, key: str, where: str, path: Path) -> None:
    """A model key of the wrong TOML type (set = 5, input_shapes = { x = [1, "a"] }) is exit 2 naming the key."""
    def strings(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))

    def dims(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and bool(v) and
                                      all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v))

    ok = {"str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool), "list": strings,
          "shapes": lambda v: isinstance(v, dict) and all(dims(d) for d in v.values()),
          "ranges": lambda v: isinstance(v, dict) and all(isinstance(d, str) for d in v.values())}.get(kind)
    if ok is not None and not ok(value):
        example = {"shapes": "{ image = [1, 3, 224, 224] }", "ranges": '{ image = "1x3x224x224:4x3x224x224:8x3x224x224" }',
                   "list": '["validate.samples=8"]', "bool": "true", "int": "8", "str": '"..."'}[kind]
        raise UsageError(f"{path}: {key} = {value!r} in {where} must be {_KIND_WANT[kind]}", f"e.g. {key} = {example}")
    if _has_nul(value):
        raise UsageError(f"{path}: {key} in {where} holds a NUL character", "remove it")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _resolve_path(value: Any, root: Path, key: str, path: Path, *, data: bool = False) -> Any:
    if not isinstance(value, str):
        raise UsageError(f"{path}: {key} must be a string path, not {type(value).__name__}", "quote the path")
    if "\0" in value:
        raise UsageError(f"{path}: {key} = {value!r} holds a NUL character", "remove it")
    if data and value == "random":
        return value
    p = Path(value)
    return p if p.is_absolute() else (root / p)


def _model_entry(raw: dict[str, Any], name: str | None, defaults: dict[str, Any], targets: list[str], root: Path,
                 path: Path) -> ModelEntry:
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: model {name!r} must be a table", "e.g. [models.digits] with source = \"digits.pt2\"")
    merged = {**defaults, **raw}
    for key in merged:
        if key not in ENTRY_KEYS:
            raise _unknown(key, ENTRY_KEYS, f"model {name or raw.get('name', '?')!r}", path)
    source = merged.pop("source", None)
    if source is None and "model" not in merged:
        raise UsageError(f"{path}: model {name or merged.get('name', '?')!r} has no `source`",
                         "add source = \"path/to/model\" (or model = \"pkg.module:function\")")
    source_path = _resolve_path(source, root, "source", path) if source is not None else None
    name = name or merged.pop("name", None) or (source_path.stem if source_path else str(merged["model"]).split(":")[-1])
    merged.pop("name", None)
    model_targets = merged.pop("targets", targets)
    if isinstance(model_targets, str):
        model_targets = [model_targets]
    _check_kind(model_targets, "list", "targets", f"model {name or '?'!r}", path)
    if not model_targets:
        raise UsageError(f"{path}: model {name!r} has no targets", "add targets = [\"onnx\"] to it or at the top level")
    resolved_targets = []
    for t in model_targets:
        looks_like_file = t.endswith(".toml") or "/" in t
        resolved_targets.append(str(root / t) if looks_like_file and not Path(t).is_absolute() else t)
    options: dict[str, Any] = {}
    for key, value in merged.items():
        kind = MODEL_KEYS[key][1]
        if kind not in ("path", "data"):
            _check_kind(value, kind, key, f"model {name!r}", path)
        if kind in ("path", "data"):
            options[key] = _resolve_path(value, root, key, path, data=kind == "data")
        elif kind in ("shapes", "ranges") and not isinstance(value, dict):
            raise UsageError(f"{path}: {key} of model {name!r} must be a table", f"e.g. {key} = {{ image = [1, 3, 224, 224] }}")
        elif kind == "list":
            options[key] = [value] if isinstance(value, str) else list(value)
        else:
            options[key] = value
    from edgeconv.targets.schema import name_problem

    problem = name_problem(name)
    if problem is not None:
        raise UsageError(f"{path}: model name {name!r} {problem}: it names the model's output folder",
                         "use letters, digits, '.', '_', '+' and '-'")
    return ModelEntry(name, source_path, tuple(dict.fromkeys(resolved_targets)), options)


def load_config(path: Path) -> BatchConfig:
    path = Path(path)
    if path.is_dir():
        path = find_config(path)
    from edgeconv.targets.schema import load_toml

    try:
        doc = load_toml(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError as e:
        raise UsageError(f"config file {path} not found", "pass an edgeconv.toml or a pyproject.toml with [tool.edgeconv]") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}", "check the path") from e
    if path.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("edgeconv")
        if doc is None:
            raise UsageError(f"{path} has no [tool.edgeconv] table", f"add one, or write an {CONFIG_NAME}")
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: [tool.edgeconv] must be a table", "see docs/cli.md#edgeconv-batch")
    for key in doc:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, "the top level", path)
    root = path.resolve().parent
    targets = doc.get("targets", [])
    targets = [targets] if isinstance(targets, str) else targets
    _check_kind(targets, "list", "targets", "the top level", path)
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise UsageError(f"{path}: [defaults] must be a table", "e.g. [defaults] with eval = \"data/eval\"")
    for key in defaults:
        if key not in MODEL_KEYS and key != "targets":
            raise _unknown(key, set(MODEL_KEYS), "[defaults]", path)
    if "targets" in defaults:
        targets = defaults.pop("targets")
        targets = [targets] if isinstance(targets, str) else targets
        _check_kind(targets, "list", "targets", "[defaults]", path)
    raw_models = doc.get("models", {})
    if isinstance(raw_models, dict):
        models = [_model_entry(raw, name, defaults, targets, root, path) for name, raw in raw_models.items()]
    elif isinstance(raw_models, list):
        models = [_model_entry(raw, None, defaults, targets, root, path) for raw in raw_models]
    else:
        raise UsageError(f"{path}: `models` must be tables", "use [models.NAME] or [[models]]")
    if not models:
        raise UsageError(f"{path}: no models", "add a [models.NAME] table with source = \"...\"")
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"{path}: model name(s) used twice: {', '.join(dupes)}", "give each model a distinct name")
    output = doc.get("output", "out")
    jobs = doc.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise UsageError(f"{path}: jobs = {jobs!r} must be a positive integer", "e.g. jobs = 2")
    return BatchConfig(path, root, _resolve_path(output, root, "output", path), jobs, tuple(models))
