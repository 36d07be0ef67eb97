"""TensorFlow sources: Keras `.keras` (Keras 3) and legacy `.h5` files, and SavedModel directories.

Before a framework opens the file, a Keras config with code-carrying layers (Lambda, ...; sources/keras_safety.py)
and a SavedModel with file-system / Python ops (sources/savedmodel_safety.py) are refused (exit 7) unless
--trust-code; Keras 3 then loads with safe_mode=True."""

from __future__ import annotations

import os
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, SafetyError, first_line
from edgeconv.formats import KERAS_H5, Artifact, Format, TensorSpec
from edgeconv.sources import SourceLoader, SourceModel


def quiet_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return require("tensorflow", "tf", purpose="TensorFlow/Keras sources")


def _dims(shape: Any) -> tuple[int | str | None, ...]:
    return tuple(int(d) if d is not None else None for d in shape)


def _dtype_name(dtype: Any) -> str:
    return getattr(dtype, "name", str(dtype)).replace("tf.", "")


class KerasModel:
    """A loaded Keras model plus the names edgeconv uses for its inputs and outputs."""

    def __init__(self, model: Any, input_names: list[str], output_names: list[str]):
        self.model = model
        self.input_names = input_names
        self.output_names = output_names

    def __call__(self, feeds: dict[str, Any]) -> list[Any]:
        args = [feeds[n] for n in self.input_names]
        out = self.model(args[0] if len(args) == 1 else args, training=False)
        if isinstance(out, dict):
            return [out[k] for k in self.output_names]
        if isinstance(out, (list, tuple)):
            return list(out)
        return [out]


class SavedModelFunction:
    """The serving signature of a SavedModel."""

    def __init__(self, loaded: Any, signature: Any, input_names: list[str], output_names: list[str]):
        self.loaded = loaded  # keeps variables alive
        self.signature = signature
        self.input_names = input_names
        self.output_names = output_names

    def __call__(self, feeds: dict[str, Any]) -> list[Any]:
        out = self.signature(**{n: feeds[n] for n in self.input_names})
        return [out[k] for k in self.output_names]


def _functional(keras: Any, model: Any, artifact: Artifact) -> Any:
    """A subclassed keras.Model has no symbolic inputs: wrap it in a functional model on the input shape it was built
    with (its build config; batch kept dynamic), the input named after call()'s first argument."""
    import inspect

    shape = (model.get_build_config() or {}).get("input_shape") if hasattr(model, "get_build_config") else None
    if not shape or not isinstance(shape, (list, tuple)) or not all(d is None or isinstance(d, int) for d in shape):
        raise InvalidInputError(f"{artifact.path} is a Keras model without defined inputs (subclassed, never built, "
                                "or built on several inputs)", "save a functional/Sequential model, or call the "
                                "model once on one input before saving it")
    params = [p for p in inspect.signature(model.call).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    name = params[0].name if params else "input"
    inputs = keras.Input(shape=tuple(shape[1:]), name=name)
    return keras.Model(inputs, model(inputs), name=model.name)


def _missing_class(error: BaseException) -> bool:
    """Keras could not find a class the file names (not registered: its module was not imported)."""
    text = str(error)
    return "Could not locate class" in text or "Unknown layer" in text or "Could not deserialize class" in text


class TensorFlowSourceLoader(SourceLoader):
    name = "tensorflow"
    formats = frozenset({Format.KERAS, Format.SAVEDMODEL})
    extra = "tf"

    def open(self, artifact: Artifact, options: ConvertOptions) -> SourceModel:
        trust = options.trust_code
        if artifact.format == Format.SAVEDMODEL:
            handle: KerasModel | SavedModelFunction = self._load_savedmodel(artifact, trust)
        else:
            handle = self._load_keras(artifact, trust, options.custom_objects)
        if isinstance(handle, KerasModel):
            specs = [
                TensorSpec(name, _dims(t.shape), _dtype_name(t.dtype)) for name, t in zip(handle.input_names, handle.model.inputs)
            ]
        else:
            sig_inputs = handle.signature.structured_input_signature[1]
            specs = [TensorSpec(n, _dims(sig_inputs[n].shape), _dtype_name(sig_inputs[n].dtype)) for n in handle.input_names]
        return SourceModel(artifact, tuple(specs), tuple(handle.output_names), "tensorflow", self, "", handle)

    def load_handle(self, source: SourceModel) -> Any:
        raise AssertionError("TensorFlow sources are loaded in open()")

    def _load_keras(self, artifact: Artifact, trust_code: bool, custom_objects: tuple[str, ...] = ()) -> KerasModel:
        from edgeconv.sources.keras_safety import check_keras_file
        from edgeconv.sources.user_code import import_user_module, parse_module_name

        check_keras_file(artifact.path, artifact.variant, trust_code)  # h5py / zipfile only: before Keras opens it
        quiet_tensorflow()
        keras = require("keras", "tf", purpose="Keras sources")
        for name in custom_objects:  # the user's modules: their register_keras_serializable classes
            import_user_module(parse_module_name(name, "--custom-objects", "mypkg.layers"), f"--custom-objects {name}")
        try:
            model = keras.saving.load_model(str(artifact.path), compile=False, safe_mode=not trust_code)
        except Exception as first:
            if not trust_code and "safe_mode" in str(first):  # Keras refused code our config check did not name
                raise SafetyError(f"{artifact.path}: Keras refuses to load it safely: {first_line(first)}",
                                  "pass --trust-code only if you trust its origin") from first
            if artifact.variant != KERAS_H5:
                hint = ("the file is damaged, or uses custom layers that are not importable" if custom_objects else
                        "a custom class: pass --custom-objects package.module (the module that registers it with "
                        "keras.saving.register_keras_serializable)" if _missing_class(first) else
                        "the file is damaged, or uses custom layers: pass --custom-objects package.module")
                raise InvalidInputError(f"cannot load Keras model {artifact.path}: {first_line(first)}", hint) from first
            try:  # legacy tf.keras .h5 files
                tf_keras = require("tf_keras", "tf", purpose="legacy .h5 models")
                model = tf_keras.models.load_model(str(artifact.path), compile=False, safe_mode=not trust_code)
            except Exception as e:
                raise InvalidInputError(f"cannot load Keras .h5 model {artifact.path}: {first_line(e)}",
                                        "the file is damaged or holds only weights (save the whole model)") from e
        if not getattr(model, "inputs", None):
            model = _functional(keras, model, artifact)
        input_names = [t.name.split(":")[0] for t in model.inputs]
        output_names = list(getattr(model, "output_names", None) or [t.name.split(":")[0] for t in model.outputs])
        return KerasModel(model, input_names, output_names)

    def _load_savedmodel(self, artifact: Artifact, trust_code: bool) -> SavedModelFunction:
        from edgeconv.sources.savedmodel_safety import check_savedmodel

        check_savedmodel(artifact.path, trust_code)  # the proto only, decoded without TensorFlow: before it loads
        tf = quiet_tensorflow()
        try:
            loaded = tf.saved_model.load(str(artifact.path))
        except Exception as e:
            raise InvalidInputError(f"cannot load SavedModel {artifact.path}: {first_line(e)}", "the directory is damaged") from e
        signatures = getattr(loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise InvalidInputError(f"SavedModel {artifact.path} has no serving_default signature",
                                    "export it with a serving signature (keras: model.export(path))")
        sig = signatures["serving_default"]
        input_names = sorted(sig.structured_input_signature[1])
        output_names = sorted(sig.structured_outputs)
        return SavedModelFunction(loaded, sig, input_names, output_names)

