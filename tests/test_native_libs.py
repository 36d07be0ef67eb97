"""TensorFlow and the QNN execution provider in one run (edgeconv/native_libs.py): a Hexagon target followed by a
TFLite target through onnx2tf used to kill the process (SIGSEGV, exit 139) once the QNN EP had loaded Qualcomm's
libraries before TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.formats import detect
from edgeconv.native_libs import modules_of, needs_tensorflow_first
from edgeconv.pipeline import build_plan
from edgeconv.targets import resolve


def _modules(source: Path, *targets: str) -> set[str]:
    options = ConvertOptions(input_shapes={"image": (1, 1, 8, 8)}, calib="random")
    return modules_of(build_plan(detect(source), [resolve(t) for t in targets], options))


def test_tensorflow_goes_first_only_when_a_run_needs_both(digits: Any) -> None:
    assert needs_tensorflow_first(_modules(digits.onnx, "hexagon-int8", "tflite-int8"))
    assert needs_tensorflow_first(_modules(digits.pt2, "hexagon-int8", "coreml-fp32"))  # coremltools imports TF
    assert not needs_tensorflow_first(_modules(digits.onnx, "hexagon-int8", "onnx-int8-qdq"))
    assert not needs_tensorflow_first(_modules(digits.onnx, "tflite-int8", "onnx"))


def test_hexagon_then_tflite_in_one_process(cli: Any, digits: Any, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "hexagon-int8", "-t", "tflite-fp32", "--input-shape", "image=1x1x8x8",
                 "--calib", digits.calib, "--eval", digits.eval, "-o", tmp_path / "out", "--json")
    assert result.code == 0, f"exit {result.code}: {result.stderr[-1500:]}"
    targets = {t["target"]: t for t in json.loads(result.stdout)["targets"]}
    assert targets["hexagon-int8"]["validation"]["runtime"] == "qnn_htp"
    assert targets["hexagon-int8"]["validation"]["metrics"]["snr_db"] > 35
    assert targets["tflite-fp32"]["validation"]["metrics"]["snr_db"] > 80
