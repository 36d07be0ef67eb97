"""Keras files that carry code: found in the model's config before Keras or tf_keras opens the file.

A `Lambda` layer holds Python bytecode (tf_keras `.h5`: marshalled in `function`; Keras 3 `.keras`: a `__lambda__`
object) that runs as soon as the model is rebuilt; TorchModuleWrapper unpickles a torch module, JaxLayer / FlaxLayer
wrap Python callables, TFSMLayer loads another SavedModel from a path, and a tf_keras TFOpLambda calling a file-system
or Python op (`io.write_file`, `py_function`, ...) touches files when the model runs. The config is read with h5py
(`model_config` attribute) or from the zip (`config.json`); nested models are walked too. The HDF5 file (the `.h5`,
or a `.keras` archive's `model.weights.h5`) is also checked for data read from outside it (archive_safety.check_hdf5:
exit 7 even with --trust-code, like a symlink leaving a model's folder).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeconv.errors import EdgeconvError, InvalidInputError, SafetyError, first_line

CODE_LAYERS = frozenset({"Lambda", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer"})
# dotted-name parts of a tf_keras TFOpLambda `function` (a tf.* symbol) that reach files, Python or the process
RISKY_TF_SYMBOL_PARTS = frozenset({"io", "gfile", "py_function", "numpy_function", "py_func", "print", "summary",
                                   "saved_model", "train", "data", "load_library", "load_op_library", "raw_ops",
                                   "debugging", "write_file", "read_file", "matching_files"})


def h5_model_config(path: Path) -> Any:
    """The `model_config` JSON of a Keras `.h5` file, or None (a weights-only file)."""
    from edgeconv.deps import require
    from edgeconv.sources.archive_safety import check_hdf5

    h5py = require("h5py", "tf", purpose="checking Keras .h5 files")
    try:
        with h5py.File(path, "r") as f:
            check_hdf5(f, path)  # external links / external-file datasets: exit 7, trusted or not
            raw = f.attrs.get("model_config")
    except EdgeconvError:
        raise
    except Exception as e:  # h5py raises OSError / ValueError / KeyError for damaged files
        raise InvalidInputError(f"cannot read HDF5 file {path}: {first_line(e)}", "the file is damaged; save the model again") from e
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(str(raw))
    except ValueError as e:
        raise InvalidInputError(f"{path}: the Keras model_config attribute is not JSON ({first_line(e)})",
                                "the file is damaged; save the model again") from e


def keras_v3_config(path: Path) -> Any:
    """config.json of a Keras 3 `.keras` archive (size-capped; the archive itself was checked by detect())."""
    from edgeconv.sources.archive_safety import read_member

    try:
        with zipfile.ZipFile(path) as zf:
            data = read_member(zf, "config.json")
            if "model.weights.h5" in zf.namelist():
                _check_weights_member(zf, path)
    except EdgeconvError:
        raise
    except Exception as e:  # BadZipFile (CRC), zlib.error, KeyError, NotImplementedError (compression): damaged
        raise InvalidInputError(f"cannot read config.json of {path}: {first_line(e)}", "the file is damaged; save the model again") from e
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidInputError(f"{path}: config.json is not JSON ({first_line(e)})", "the file is damaged; save the model again") from e


def _check_weights_member(zf: zipfile.ZipFile, path: Path) -> None:
    """The .keras weights file (HDF5, read by Keras straight from the zip) must not reach files outside itself."""
    import h5py

    from edgeconv.sources.archive_safety import check_hdf5

    with zf.open("model.weights.h5") as member:
        try:
            h5 = h5py.File(member, "r")
        except Exception:  # not HDF5: Keras reports the damaged file itself (exit 3)
            return
        with h5:
            check_hdf5(h5, path)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _name(obj: dict[str, Any]) -> str:
    config = obj.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return str(name or obj.get("name") or "?")


def code_carrying_layers(config: Any) -> list[str]:
    """'name (Class)' for every object in a Keras config that runs code or touches files when loaded or run."""
    found: list[str] = []
    for obj in _objects(config):
        class_name = obj.get("class_name")
        if not isinstance(class_name, str):
            continue
        if class_name in CODE_LAYERS:
            found.append(f"{_name(obj)} ({class_name})")
        elif class_name == "__lambda__":  # Keras 3: a Python lambda serialised anywhere (e.g. an activation)
            found.append("a Python lambda (__lambda__)")
        elif class_name in ("TFOpLambda", "SlicingOpLambda"):
            config_ = obj["config"] if isinstance(obj.get("config"), dict) else {}
            symbol = str(config_.get("function", ""))
            if RISKY_TF_SYMBOL_PARTS & set(symbol.replace("tf.", "", 1).split(".")):
                found.append(f"{_name(obj)} (TFOpLambda calling tf.{symbol})")
    return sorted(dict.fromkeys(found))


def check_keras_file(path: Path, variant: str, trust_code: bool) -> None:
    """Refuse (exit 7) a Keras file whose config carries code, unless trusted."""
    from edgeconv.formats import KERAS_H5

    config = h5_model_config(path) if variant == KERAS_H5 else keras_v3_config(path)  # + the HDF5 external checks
    if trust_code:
        return
    found = code_carrying_layers(config) if config is not None else []
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise SafetyError(
            f"{path} holds layers that run Python code from the file when it is loaded: {shown}",
            "rebuild the model without Lambda layers (use built-in or registered custom layers), or pass "
            "--trust-code if you trust its origin",
            details={"code_layers": found},
        )
