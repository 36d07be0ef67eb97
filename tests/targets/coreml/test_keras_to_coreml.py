"""Keras / SavedModel → Core ML directly (one tf.function concrete function → coremltools) for every Core ML profile
(ONNX sources go through onnx2torch: tests/targets/coreml/test_onnx_to_coreml.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import convert, target_record

PROFILES = ["coreml-fp32", "ane-fp16", "coreml-w8", "coreml-palettize6", "coreml-palettize4", "coreml-w8a8"]
ON_MACOS = sys.platform == "darwin"


@pytest.fixture(scope="module")
def keras_coreml(keras_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("keras_coreml") / "out"
    return convert(keras_models / "digits_keras.keras", PROFILES, out, calib=str(keras_models / "calib"),
                   eval=str(keras_models / "eval"))


@pytest.mark.slow
def test_keras_digits_every_profile(keras_coreml: dict[str, Any]) -> None:
    for name in PROFILES:
        record = target_record(keras_coreml, name)
        assert [s["name"] for s in record["steps"]] == ["keras_to_coreml"]
        assert record["validation"]["passed"]
    if ON_MACOS:
        return
    checks = {name: target_record(keras_coreml, name)["validation"]["checks"] for name in PROFILES}
    for c in checks.values():
        assert c["inputs"] == [{"name": "image", "kind": "tensor", "shape": [1, 8, 8, 1], "dtype": "FLOAT32", "flexible": None}]
        assert [o["name"] for o in c["outputs"]] == ["logits"] and c["outputs"][0]["shape"] == [1, 10]
        assert {"conv", "max_pool", "transpose"} <= set(c["ops"]) and c["ane_unsupported_ops"] == {}
    assert checks["coreml-fp32"]["weights"] == {"FLOAT32": 5}
    assert checks["ane-fp16"]["weights"] == {"FLOAT16": 5}
    assert checks["coreml-w8"]["weights"] == {"FLOAT16": 3, "linear/INT8": 2}
    assert checks["coreml-palettize6"]["weights"] == {"FLOAT16": 3, "palettized/UINT6": 2}
    assert checks["coreml-palettize4"]["weights"] == {"FLOAT16": 3, "palettized/UINT4": 2}
    assert checks["coreml-w8a8"]["weights"] == {"FLOAT16": 3, "linear/INT8": 2}
    assert checks["coreml-w8a8"]["ops"]["quantize"] >= 4  # activations calibrated by the reference executor
    notes = {name: target_record(keras_coreml, name)["notes"]["coreml"] for name in PROFILES}
    assert notes["coreml-w8"]["weights_vs_fp32"] < 0.30 and notes["coreml-palettize4"]["weights_vs_fp32"] < 0.16
    assert notes["coreml-w8"]["weight_snr_db"]["min"] > 40 and notes["coreml-palettize4"]["weight_snr_db"]["min"] > 18
    ref = {name: c["mil_reference"]["metrics"] for name, c in checks.items()}  # NumPy MIL execution vs Keras
    assert ref["coreml-fp32"]["snr_db"] > 100 and ref["ane-fp16"]["snr_db"] > 55 and ref["coreml-w8"]["snr_db"] > 40
    assert ref["coreml-palettize4"]["snr_db"] > 20 and ref["coreml-w8a8"]["snr_db"] > 35
    assert all(r["top1_agreement"] == 1.0 for r in ref.values())


@pytest.mark.slow
def test_savedmodel_source(keras_models: Path, tmp_path: Path) -> None:
    import keras

    saved = tmp_path / "saved"
    keras.saving.load_model(str(keras_models / "digits_keras.keras")).export(str(saved), verbose=False)
    manifest = convert(saved, ["coreml-w8"], tmp_path / "out", eval=str(keras_models / "eval"))
    record = target_record(manifest, "coreml-w8")
    assert record["notes"]["coreml_route"].startswith("SavedModel") and record["validation"]["passed"]
    if not ON_MACOS:
        assert record["validation"]["checks"]["weights"]["linear/INT8"] == 2
