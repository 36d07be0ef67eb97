"""TFLiteConverter's failures become exit 4 with the cause named (targets/tflite/_convert._converter_error). The texts
are TFLiteConverter's own, as the corpus BERT-tiny's tflite-int16x8 conversion raised them."""

from __future__ import annotations

from types import SimpleNamespace

from edgeconv.targets import resolve
from edgeconv.targets.tflite._convert import _converter_error

UNCALIBRATED = ("RuntimeError: Max and min for dynamic tensors should be recorded during calibration: Failed for tensor "
                "serving_default_input_ids:0\nEmpty min/max for tensor serving_default_input_ids:0")


def test_16x8_calibration_gap_on_token_ids_is_named_with_the_profiles_that_work() -> None:
    error = _converter_error(UNCALIBRATED, SimpleNamespace(profile=resolve("tflite-int16x8")))
    assert "16x8 calibration records no range for serving_default_input_ids:0" in error.message
    assert "tensorflow/tensorflow#60799" in error.message and "tflite-int8" in error.hint
    assert error.details == {"tensor": "serving_default_input_ids:0"}


def test_the_same_gap_in_int8_points_at_the_calibration_data() -> None:
    error = _converter_error(UNCALIBRATED, SimpleNamespace(profile=resolve("tflite-int8")))
    assert "calibration recorded no range for serving_default_input_ids:0" in error.message
    assert "--calib" in error.hint


def test_no_16x8_kernel_is_named() -> None:
    text = "error: Quantization to 16x8-bit not yet supported for op: 'HARD_SWISH'.\nmore"
    error = _converter_error(text, SimpleNamespace(profile=resolve("tflite-int16x8")))
    assert "no 16x8 (int16 activation) kernel for HARD_SWISH" in error.message and "--allow-cpu-fallback" in error.hint
