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


@pytest.mark.slow
def test_dynamic_on_a_cnn_warns_and_points_to_static(trained_pitfall, digits, tmp_path: Path) -> None:
    """The pitfall CNN (trained on digits; its convs hold most of the weights): dynamic int8 quantizes its Gemm only,
    the file stays near the float one, and the run says so, naming cpu-int8; the digits CNN (its Gemm holds most of
    the weights) shrinks and gets no such warning."""
    manifest = convert(trained_pitfall.onnx, ["onnx-dynamic"], tmp_path / "cnn", eval=str(trained_pitfall.eval))
    record = target_record(manifest, "onnx-dynamic")
    size = record["notes"]["quantize"]["size"]
    assert size["conv_layers"] >= 3 and size["conv_weight_share"] >= 0.5 and size["conv_quantized"] == 0
    assert size["bytes"] > 0.75 * size["float_bytes"]  # what the user did not expect: barely smaller
    advice = [w for w in record["warnings"] if "Conv layer(s)" in w]
    assert len(advice) == 1, record["warnings"]
    assert f"{size['conv_weight_share']:.0%} of the weights" in advice[0] and "--target cpu-int8 --calib DIR" in advice[0]
    with_calib = convert(trained_pitfall.onnx, ["onnx-dynamic"], tmp_path / "cnn2", calib=str(trained_pitfall.calib),
                         eval=str(trained_pitfall.eval))
    assert any("calibrated on your --calib data" in w for w in target_record(with_calib, "onnx-dynamic")["warnings"])
    gemm = convert(digits.onnx, ["onnx-dynamic"], tmp_path / "digits", eval=str(digits.eval))
    record = target_record(gemm, "onnx-dynamic")
    size = record["notes"]["quantize"]["size"]
    assert size["conv_weight_share"] < 0.5 and size["bytes"] < 0.8 * size["float_bytes"]
    assert not [w for w in record["warnings"] if "cpu-int8" in w], record["warnings"]


def test_size_advice_when_the_file_grows() -> None:
    from edgeconv.quantizers.onnx_dynamic import size_advice

    grown = {"float_bytes": 1000, "bytes": 1040, "conv_layers": 0, "conv_weight_share": 0.0, "conv_quantized": 0}
    text = size_advice(grown, "onnx-dynamic", ("MatMul",), has_calib=False)
    assert text is not None and "not smaller than the float one (1040 vs 1000 bytes)" in text and "cpu-int8" in text
    shrunk = {**grown, "bytes": 400}
    assert size_advice(shrunk, "onnx-dynamic", ("MatMul",), has_calib=False) is None
    convs_done = {**shrunk, "conv_layers": 5, "conv_weight_share": 0.9, "conv_quantized": 5}
    assert size_advice(convs_done, "onnx-dynamic", ("Conv",), has_calib=True) is None
