"""LiteRT (ai-edge-litert, the TFLite interpreter, CPU with XNNPACK): runs .tflite artifacts.

Feeds come in the source model's names and layout; the converter's I/O map (Artifact.io, which the manifest records as
notes.tflite_io) says which signature key takes each input, which gives each output, and the layout permutation between
them. Integer I/O (full-int8 / int16x8 with keep_io_types = false) is quantized / dequantized with each tensor's scale
and zero point. Without a map (a .tflite made elsewhere) inputs and outputs are matched by name, then by position, and a
channels-last input is detected from its shape."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.targets.tflite._convert import apply_perm, channels_last_perm, kernel_error
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format, IoMap, TensorLink, TensorSpec
from edgeconv.runtimes.base import Runtime, Session

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
              "int32": np.int32, "int64": np.int64, "bool": np.bool_}


def quantize_input(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype:
        return array
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and array.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale) + zero, info.min, info.max).astype(dtype)
    return array.astype(dtype)


def dequantize_output(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if array.dtype.kind in "iu" and scale:
        return ((array.astype(np.float32) - zero) * scale).astype(np.float32)
    return array


def _loose(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _pick(name: str, keys: list[str], position: int) -> str:
    if name in keys:
        return name
    loose = [k for k in keys if _loose(k) == _loose(name)]
    if len(loose) == 1:
        return loose[0]
    if f"output_{position}" in keys:
        return f"output_{position}"
    if position < len(keys):
        return keys[position]
    raise InvalidInputError(f"the .tflite has no tensor for '{name}' (it has {', '.join(keys)})",
                            "the model's inputs/outputs differ from the source's")


def guess_io_map(runner: Any, signature: str, inputs: tuple[TensorSpec, ...], outputs: tuple[str, ...]) -> IoMap:
    in_details = runner.get_input_details()
    in_keys = sorted(in_details)
    out_keys = list(runner.get_output_details())
    links = []
    for i, spec in enumerate(inputs):
        key = _pick(spec.name, in_keys, i)
        shape = tuple(int(d) for d in in_details[key]["shape"])
        perm = None
        if len(spec.shape) >= 3 and spec.is_static and tuple(spec.shape) != shape:
            candidate = channels_last_perm(len(spec.shape))
            if tuple(spec.shape[p] for p in candidate) == shape:
                perm = tuple(candidate)
        links.append(TensorLink(spec.name, key, perm))
    names = list(outputs) or out_keys
    return IoMap(signature, tuple(links), tuple(TensorLink(name, _pick(name, sorted(out_keys), i))
                                                for i, name in enumerate(names)), "guessed")


class LiteRtSession(Session):
    def __init__(self, interpreter: Any, runner: Any, io: IoMap, inputs: tuple[TensorSpec, ...]):
        self.interpreter = interpreter
        self.runner = runner
        self.io = io
        self.inputs = inputs
        self.output_names = tuple(m.source for m in io.outputs)
        self._in_details = runner.get_input_details()
        self._out_details = runner.get_output_details()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        kwargs = {}
        for m in self.io.inputs:
            if m.source not in feeds:
                raise InvalidInputError(f"no sample for input '{m.source}'", f"samples have: {', '.join(feeds)}")
            array = apply_perm(feeds[m.source], m.perm)
            kwargs[m.key] = np.ascontiguousarray(quantize_input(array, self._in_details[m.key]))
        try:
            result = self.runner(**kwargs)
        except (ValueError, RuntimeError) as e:
            if "failed to prepare" in str(e):
                raise UnsupportedError(f"LiteRT refuses the model: {kernel_error(e)}",
                                       "a kernel cannot run this (quantized) op; try another precision profile") from e
            if invoke := _NO_KERNEL_AT_RUN.search(" ".join(str(e).split())):  # the converter wrote what LiteRT cannot run
                raise UnsupportedError(
                    f"LiteRT has no {invoke['op']} kernel for this model's {_TFLITE_TYPES.get(invoke['got'], 'type ' + invoke['got'])} "
                    f"tensors: {invoke['what']}",
                    "TFLiteConverter wrote an op LiteRT cannot run at this precision (LayerNorm's SQUARED_DIFFERENCE "
                    "in int16x8); use tflite-int8 or tflite-fp16") from e
            raise InvalidInputError(f"LiteRT failed to run the model: {first_line(e)}",
                                    "check that the samples' shapes match the model's inputs") from e
        return [apply_perm(dequantize_output(np.asarray(result[m.key]), self._out_details[m.key]), m.perm)
                for m in self.io.outputs]


# "SquaredDifference only supports FLOAT32 and INT32 now, got 7.Node number 3 (SQUARED_DIFFERENCE) failed to invoke."
_NO_KERNEL_AT_RUN = re.compile(r"(?P<what>[^.]*only supports [^.]*?got (?P<got>\d+))\.\s*Node number \d+ "
                               r"\((?P<op>[A-Z0-9_]+)\) failed to invoke")
_TFLITE_TYPES = {"1": "float32", "2": "int32", "3": "uint8", "4": "int64", "7": "int16", "9": "int8", "10": "float16"}


def load_interpreter(path: str, threads: int = 1) -> tuple[Any, Any, str]:
    """(interpreter, signature runner, signature key)."""
    litert = require("ai_edge_litert.interpreter", "tflite", purpose="running .tflite models")
    try:
        interpreter = litert.Interpreter(model_path=path, num_threads=threads)
    except Exception as e:
        raise InvalidInputError(f"LiteRT cannot load {path}: {first_line(e)}", "the .tflite file is damaged") from e
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise InvalidInputError(f"{path} has no signature", "convert it with a serving signature (edgeconv always does)")
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    return interpreter, interpreter.get_signature_runner(key), key


class LiteRtRuntime(Runtime):
    name = "litert"
    formats = frozenset({Format.TFLITE})
    extra = "tflite"
    requires = ("ai_edge_litert",)

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        interpreter, runner, key = load_interpreter(str(artifact.path))
        io = artifact.io  # the converter's map; a .tflite made elsewhere has none: matched by name and shape
        if io is None or io.signature != key:
            io = guess_io_map(runner, key, ctx.source.inputs, ctx.source.output_names)
        return LiteRtSession(interpreter, runner, io, ctx.source.inputs)
