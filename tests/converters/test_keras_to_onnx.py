"""Keras (.keras, .h5) and SavedModel → ONNX with tf2onnx, validated against TensorFlow."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from tests.helpers import convert, model_path, target_record


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_keras.keras", "digits_keras.h5"])
def test_keras_to_onnx(keras_models: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    manifest = convert(keras_models / name, ["onnx"], out, eval=str(keras_models / "eval"))
    metrics = target_record(manifest, "onnx")["validation"]["metrics"]
    assert metrics["snr_db"] > 90 and metrics["top1_agreement"] == 1.0 and metrics["samples"] == 16
    model = onnx.load(str(model_path(manifest, out, "onnx")))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]  # Keras output name kept
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [8, 8, 1]  # NHWC as the Keras model takes it


@pytest.mark.slow
def test_savedmodel_to_onnx_fp16(keras_models: Path, tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(keras_models / "dw_residual.keras")
    model.export(str(tmp_path / "saved"), verbose=False)
    out = tmp_path / "out"
    manifest = convert(tmp_path / "saved", ["onnx", "onnx-fp16"], out, eval=str(keras_models / "dw_calib"))
    assert manifest["source"]["format"] == "savedmodel"
    assert target_record(manifest, "onnx")["validation"]["metrics"]["snr_db"] > 90
    assert target_record(manifest, "onnx-fp16")["validation"]["metrics"]["snr_db"] > 35
