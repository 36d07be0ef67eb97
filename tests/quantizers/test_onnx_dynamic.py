"""Dynamic int8 (no calibration) on the digits CNN: the Gemm goes integer, Conv stays float by default (ORT's
ConvInteger is ~4x slower than float on CPU), unless the profile asks for it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from model_zoo import accuracy
from tests.helpers import convert, model_path, target_record
from tests.quantizers.test_onnx_qdq import ort_run


@pytest.mark.slow
def test_dynamic_int8_digits(digits, tmp_path: Path) -> None:
    manifest = convert(digits.onnx, ["onnx-dynamic"], tmp_path / "out", eval=str(digits.eval))
    record = target_record(manifest, "onnx-dynamic")
    out = model_path(manifest, tmp_path / "out", "onnx-dynamic")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops
    q = record["notes"]["quantize"]
    assert q["check"]["float_weights_left"] == [] and q["check"]["size_ratio"] < 0.8
    x, y = digits.split.x_test, digits.split.y_test
    assert abs(accuracy(ort_run(digits.onnx, x), y) - accuracy(ort_run(out, x), y)) <= 0.01
    convs = convert(digits.onnx, ["onnx-dynamic"], tmp_path / "out2", eval=str(digits.eval),
                    overrides=('quantize.options={op_types=["Conv","Gemm","MatMul"]}',))
    out2 = model_path(convs, tmp_path / "out2", "onnx-dynamic")
    assert "ConvInteger" in {n.op_type for n in onnx.load(str(out2)).graph.node}
    assert target_record(convs, "onnx-dynamic")["notes"]["quantize"]["check"]["size_ratio"] < 0.45
