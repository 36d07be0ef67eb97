"""Shared by the TFLite edges (keras_to_tflite, savedmodel_to_tflite, onnx_to_tflite): SavedModel → .tflite with
TFLiteConverter, quantized as the profile's [quantize] section says (stage = "converter"), then the op-support check.

Precision → converter settings:
  fp32     nothing
  fp16     Optimize.DEFAULT + supported_types = [float16]           (fp16 weights, float32 compute/I-O; GPU delegate)
  dynamic  Optimize.DEFAULT                                         (int8 weights, float activations)
  int8     Optimize.DEFAULT + representative dataset + TFLITE_BUILTINS_INT8; int8 I/O unless keep_io_types
  int16x8  Optimize.DEFAULT + representative dataset + EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8;
           int16 I/O unless keep_io_types

The converter does not fail on an op without an integer kernel (it leaves it float), so full-integer models are checked
op by op afterwards (tflite_ops.float_ops) and refused (exit 4, ops listed) unless --allow-cpu-fallback.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format, IoMap, TensorLink, io_note_key
from edgeconv.quantizers.calibration import samples_for
from edgeconv.targets.tflite.ops import float_ops, op_names

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
TFLITE_PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
FULL_INTEGER = ("int8", "int16x8")
NOTES_KEY = io_note_key(Format.TFLITE)  # "tflite_io": the manifest's copy of the artifact's I/O map (Artifact.io)


def io_map(inputs: list[TensorLink], outputs: list[TensorLink], layout: str = "source") -> IoMap:
    """How the .tflite's signature relates to the source model: which signature key feeds each source input and which
    gives each source output, and the axis permutation between the two layouts (formats.IoMap)."""
    return IoMap(SIGNATURE, tuple(inputs), tuple(outputs), layout)


def sanitize(name: str) -> str:
    """A TensorFlow-safe signature key for a tensor name (what TF accepts as an op name)."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    return safe if re.match(r"[A-Za-z]", safe[:1]) else f"t_{safe}"


def channels_last_perm(rank: int) -> tuple[int, ...]:
    """NCHW → NHWC (and NCW → NWC, NCDHW → NDHWC)."""
    return (0, *range(2, rank), 1)


def channels_first_perm(rank: int) -> tuple[int, ...]:
    """NHWC → NCHW (inverse of channels_last_perm)."""
    return (0, rank - 1, *range(1, rank - 1))


def apply_perm(array: np.ndarray, perm: list[int] | tuple[int, ...] | None) -> np.ndarray:
    return array if perm is None else np.ascontiguousarray(np.transpose(array, perm))


def check_precision(ctx: StepContext) -> str:
    scheme = ctx.profile.quantize
    if scheme.precision not in TFLITE_PRECISIONS:
        raise UnsupportedError(f"TFLite targets do not support precision '{scheme.precision}'",
                               f"use one of {', '.join(TFLITE_PRECISIONS)}")
    if scheme.precision != "fp32" and scheme.stage not in ("converter", "none"):
        raise UnsupportedError(f"profile {ctx.profile.name}: TFLite quantization is done by TFLiteConverter "
                               f"(quantize.stage = \"converter\"), not stage '{scheme.stage}'",
                               "set quantize.stage = \"converter\" in the profile")
    return scheme.precision


def calibration_feeds(ctx: StepContext, io: IoMap) -> list[dict[str, np.ndarray]]:
    """Calibration samples (source layout, from --calib) turned into signature feeds in the TFLite layout."""
    samples = samples_for(ctx)  # --calib folder (.npy/.npz or images + --preprocess) or random, capped, recorded
    feeds = []
    for sample in samples:
        feeds.append({m.key: apply_perm(sample[m.source], m.perm).astype(np.float32, copy=False)
                      if sample[m.source].dtype.kind == "f" else apply_perm(sample[m.source], m.perm)
                      for m in io.inputs})
    return feeds


def configure(converter: Any, precision: str, ctx: StepContext, representative: Callable[[], Iterator[Any]] | None) -> None:
    configure_converter(converter, **converter_settings(precision, ctx), representative=representative)


def converter_settings(precision: str, ctx: StepContext) -> dict[str, Any]:
    """What configure_converter needs, as plain data (the full-integer conversion runs in a child process)."""
    scheme = ctx.profile.quantize
    return {"precision": precision, "per_channel": scheme.per_channel, "keep_io_types": scheme.keep_io_types,
            "float_fallback": ctx.options.allow_cpu_fallback}


def configure_converter(converter: Any, precision: str, per_channel: bool, keep_io_types: bool,
                        representative: Callable[[], Iterator[Any]] | None, float_fallback: bool = False) -> None:
    """`float_fallback` (--allow-cpu-fallback): int16x8 also allows TFLITE_BUILTINS, so an op with no 16x8 kernel
    (HARD_SWISH) stays float instead of the converter refusing the model; check_ops then warns, listing them."""
    tf = require("tensorflow", "tf")
    if precision == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not per_channel:
        converter._experimental_disable_per_channel = True
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision in FULL_INTEGER:
        converter.representative_dataset = representative
        if precision == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = tf.int8
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if float_fallback:
                converter.target_spec.supported_ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            io_type = tf.int16
        if not keep_io_types:
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type


_OP_IN_ERROR = re.compile(r"'(tf\.[A-Za-z0-9_]+|tfl\.[A-Za-z0-9_]+)'")
_NO_16X8_KERNEL = re.compile(r"Quantization to 16x8-bit not yet supported for op: '([A-Z0-9_]+)'")
_UNCALIBRATED = re.compile(r"Max and min for dynamic tensors should be recorded during calibration: Failed for tensor "
                           r"(\S+)")


def _converter_error(text: str, ctx: StepContext) -> UnsupportedError:
    ops = sorted(set(_OP_IN_ERROR.findall(text)))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if no_kernel := sorted(set(_NO_16X8_KERNEL.findall(text))):  # a TFLite builtin, but no int16-activation kernel
        return UnsupportedError(
            f"{ctx.profile.name}: TFLite has no 16x8 (int16 activation) kernel for {', '.join(no_kernel)}",
            "pass --allow-cpu-fallback to keep those ops float (TFLite's own float fallback, listed in the manifest), "
            "or use tflite-int8 / tflite-fp16",
            details={"ops": no_kernel},
        )
    if uncalibrated := _UNCALIBRATED.search(text):
        tensor = uncalibrated.group(1)
        if ctx.profile.quantize.precision == "int16x8":  # TFLiteConverter's 16x8 mode (tensorflow/tensorflow#60799)
            return UnsupportedError(
                f"{ctx.profile.name}: TFLiteConverter's 16x8 calibration records no range for {tensor} (its 16x8 mode "
                f"fails on integer inputs such as token ids: tensorflow/tensorflow#60799)",
                "use tflite-int8 (its calibration takes such inputs), tflite-dynamic or tflite-fp16",
                details={"tensor": tensor})
        return UnsupportedError(f"{ctx.profile.name}: TFLiteConverter's calibration recorded no range for {tensor}",
                                "check that the --calib samples reach that input with real values",
                                details={"tensor": tensor})
    return UnsupportedError(
        f"TFLiteConverter cannot convert the model for {ctx.profile.name}: {lines[0][:300] if lines else 'no message'}",
        "the listed ops have no TFLite builtin kernel; replace them in the model (Flex/select TF ops are not "
        "used because edge runtimes lack them)",
        details={"ops": ops},
    )


def convert_saved_model(saved_model: Path, io: IoMap, ctx: StepContext, out: Path) -> Artifact:
    """TFLiteConverter.from_saved_model with the profile's precision, op check, write `out`."""
    tf = require("tensorflow", "tf", purpose="TFLite conversion")
    precision = check_precision(ctx)
    if precision in FULL_INTEGER:  # calibration can crash TensorFlow: in a child process (tflite/_isolated.py)
        from edgeconv.targets.tflite._isolated import convert_in_child

        try:
            model_bytes, refused = convert_in_child(saved_model, io.signature, converter_settings(precision, ctx),
                                                    calibration_feeds(ctx, io), ctx.work_dir / "tflite_converter")
        except ChildProcessError as e:
            raise UnsupportedError(f"{ctx.profile.name}: {e} (a TensorFlow bug on this graph; nothing was written)",
                                   "use tflite-dynamic or tflite-fp16 for this model, or an ONNX Runtime / Hexagon "
                                   "int8 target") from e
        if model_bytes is None:
            raise _converter_error(refused, ctx)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[io.signature])
        configure(converter, precision, ctx, None)
        try:
            model_bytes = converter.convert()
        except Exception as e:  # ConverterError: ops without a TFLite builtin kernel, and friends
            raise _converter_error(str(e), ctx) from e
    check_ops(model_bytes, precision, ctx)
    check_prepares(model_bytes, ctx)
    out.write_bytes(model_bytes)
    ctx.notes[NOTES_KEY] = io.to_json()
    ctx.notes["tflite_ops"] = op_names(model_bytes)
    return Artifact(out, Format.TFLITE, precision, io=io)


def check_ops(model_bytes: bytes, precision: str, ctx: StepContext) -> None:
    """Full-integer profiles must leave no float compute op (NNAPI / Hexagon / Edge NPUs would fall back to CPU)."""
    if precision not in FULL_INTEGER:
        return
    left = float_ops(model_bytes)
    if not left:
        return
    listed = sorted({op.name for op in left})
    message = (f"{ctx.profile.name}: {len(left)} op(s) stayed float in the full-integer model: {', '.join(listed)}")
    if ctx.options.allow_cpu_fallback:
        ctx.warn(message + " (kept: --allow-cpu-fallback)")
        return
    raise UnsupportedError(message, "these ops have no integer kernel; they would run in float on the CPU. Replace them, "
                           "use tflite-dynamic / tflite-fp16, or pass --allow-cpu-fallback to accept it",
                           details={"float_ops": [op.to_json() for op in left]})


# Run in a child process: some LiteRT kernels abort() the process instead of raising (int16x8 on the transformer
# block, LiteRT 2.3), which would end the whole run with no message.
_PREPARE = """
import sys
from ai_edge_litert.interpreter import Interpreter
try:
    Interpreter(model_path=sys.argv[1], num_threads=1).allocate_tensors()
except (RuntimeError, ValueError) as e:
    print(" ".join(str(e).split())[:300] or type(e).__name__, file=sys.stderr)
    sys.exit(3)
"""


def check_prepares(model_bytes: bytes, ctx: StepContext) -> None:
    """LiteRT must be able to prepare every kernel (allocate tensors): some quantized models convert but are refused
    by the kernels, e.g. DEPTHWISE_CONV_2D 'no_integer_overflow_from_quantization' when a scale is out of range, and
    some crash the process doing so (checked in a child process for that reason)."""
    import signal
    import subprocess
    import sys

    require("ai_edge_litert.interpreter", "tflite", purpose="checking the converted .tflite")
    path = ctx.work_dir / "prepare-check.tflite"
    path.write_bytes(model_bytes)
    proc = subprocess.run([sys.executable, "-c", _PREPARE, str(path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode == 0:
        path.unlink()
        return
    log.debug("LiteRT prepare check exited %s: %s", proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("INFO:", "WARNING:"))]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else proc.returncode
        reason = f"LiteRT crashed ({name}) preparing its kernels" + (f": {lines[-1][:300]}" if lines else "")
    else:
        reason = f"the converted model is refused by the LiteRT kernels: {lines[-1] if lines else 'see -vv'}"
    raise UnsupportedError(
        f"{ctx.profile.name}: {reason}",
        "a quantization scale or shape is out of the kernel's range; use another precision profile "
        "(e.g. tflite-int8 instead of tflite-int16x8), or calibrate with real --calib data",
    )


def kernel_error(e: BaseException) -> str:
    """The useful part of a LiteRT prepare/invoke error (they repeat the failing node on several lines)."""
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__
