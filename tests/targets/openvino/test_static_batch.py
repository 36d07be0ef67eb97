"""An EfficientNet-style squeeze-excitation block from Keras (GlobalAveragePooling2D → Reshape(1, 1, C) → 1x1 Conv
swish → 1x1 Conv sigmoid → Multiply), dynamic batch through tf2onnx: after nncf.compress_weights the OpenVINO CPU
plugin cannot compile it ("ConvertWeightCompressedConv1x1ToMatmul", as on keras.applications EfficientNetB0);
edgeconv saves the IR with batch 1 and says so. The same block without the Reshape (keepdims pooling) compiles with
its dynamic batch, which it keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.corpus.data import photos, save_npy

pytestmark = [pytest.mark.slow]


def se_model(path: Path, reshape: bool) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="swish")(inp)
    s = keras.layers.GlobalAveragePooling2D(keepdims=not reshape)(x)
    if reshape:
        s = keras.layers.Reshape((1, 1, 32))(s)
    s = keras.layers.Conv2D(8, 1, activation="swish")(s)
    s = keras.layers.Conv2D(32, 1, activation="sigmoid")(s)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([x, s]))
    keras.Model(inp, keras.layers.Dense(10)(x)).save(path)
    return path


def ir_input_shape(out: Path) -> str:
    import openvino as ov

    (xml,) = out.glob("openvino-w8/*.xml")
    return str(ov.Core().read_model(str(xml)).inputs[0].get_partial_shape())


@pytest.mark.parametrize("reshape", [True, False], ids=["se-reshape", "se-keepdims"])
def test_batch_made_static_only_where_the_plugin_needs_it(cli, tmp_path: Path, reshape: bool) -> None:
    model = se_model(tmp_path / "se.keras", reshape)
    data = save_npy(tmp_path / "eval", photos(8, size=32, layout="nhwc"))
    out = tmp_path / "out"
    result = cli("convert", model, "-t", "openvino-w8", "--eval", data, "-o", out, "--json")
    assert result.code == 0, result.stdout[-3000:]
    target = json.loads(result.stdout)["targets"][0]
    assert target["validation"]["metrics"]["snr_db"] > 35, target["validation"]["metrics"]
    static = target["notes"]["openvino"].get("static_batch")
    if reshape:
        assert list(static["shapes"].values()) == [[1, 32, 32, 3]], static
        assert "ConvertWeightCompressedConv1x1ToMatmul" in static["dynamic_error"]
        assert any("cannot compile this model with a dynamic batch" in w for w in target["warnings"])
        assert ir_input_shape(out) == "[1,32,32,3]"
    else:
        assert static is None and ir_input_shape(out) == "[?,32,32,3]"
