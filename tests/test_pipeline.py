"""Within one run, targets share identical steps (edgeconv/pipeline.py): each target's manifest still says what the
shared step did, and a quantize step is shared only between targets with the same gate (the accuracy fallback searches
until the gate passes, so the gate decides the quantized model). A target whose first route's converter refuses the
model takes the other installed route (routes.fallback_route)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import convert, target_record


def _steps(record: dict[str, Any]) -> dict[str, bool]:
    return {s["name"]: bool(s.get("reused")) for s in record["steps"]}


def test_a_shared_step_reports_its_notes_in_every_target(digits: Any, tmp_path: Path) -> None:
    manifest = convert(digits.pt2, ["tflite-fp32", "tflite-int8"], tmp_path / "out", calib=str(digits.calib),
                       eval=str(digits.eval), input_shapes={"image": (1, 1, 8, 8)})
    first, second = target_record(manifest, "tflite-fp32"), target_record(manifest, "tflite-int8")
    normalise = "normalise + fuse gelu + decompose maxpool_ceil, neg, stft"
    assert _steps(second)["torch_to_onnx"] and _steps(second)[normalise]  # shared, not redone
    for key in ("exporter", "normalise"):
        assert second["notes"][key] == first["notes"][key]
    assert first["validation"]["metrics"]["snr_db"] > 35 and second["validation"]["metrics"]["snr_db"] > 35


def test_quantize_is_not_shared_between_targets_with_different_gates(digits: Any, tmp_path: Path) -> None:
    strict = tmp_path / "strict-qdq.toml"
    strict.write_text('name = "strict-qdq"\nextends = "onnx-int8-qdq"\n\n[validate.gate]\nmin_snr_db = 30.0\n')
    same = tmp_path / "same-qdq.toml"
    same.write_text('name = "same-qdq"\nextends = "onnx-int8-qdq"\n')
    manifest = convert(digits.onnx, ["onnx-int8-qdq", str(same), str(strict)], tmp_path / "out",
                       calib=str(digits.calib), eval=str(digits.eval))
    assert _steps(target_record(manifest, "same-qdq"))["quantize int8"]  # same scheme, same gate: shared
    assert not _steps(target_record(manifest, "strict-qdq"))["quantize int8"]  # other gate: its own search
    for name in ("onnx-int8-qdq", "same-qdq", "strict-qdq"):
        record = target_record(manifest, name)
        assert record["notes"]["quantize"], name  # the shared step's notes are in every target
        assert record["validation"]["metrics"]["snr_db"] > 35


@pytest.mark.slow
def test_a_refused_direct_route_falls_back_to_the_route_through_onnx(cli, tmp_path: Path) -> None:
    """The subclassed Keras corpus model (a LayerNormalization head) to tflite-int8: TFLiteConverter leaves Keras's
    LayerNorm NEG float (exit 4 before), so the target takes Keras → ONNX → onnx2tf, where passes/neg_mul.py makes it
    a MUL; the warning and the manifest say which route refused, why, and which one wrote the artifact."""
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    assert not registry.ensure(ROOT, ["keras_subclassed"])
    out = tmp_path / "out"
    result = cli("convert", *registry.cli_args(ROOT, "keras_subclassed", static=True), "-t", "tflite-int8", "-o", out,
                 "--json")
    assert result.code == 0, result.stdout[-3000:] + result.stderr[-2000:]
    record = json.loads(result.stdout)["targets"][0]
    fallback = record["notes"]["route_fallback"]
    assert fallback["refused"] == "keras_to_tflite" and "stayed float in the full-integer model: NEG" in fallback["error"]
    assert fallback["route"] == "keras_to_onnx → onnx_to_tflite"
    assert any("keras_to_tflite refused the model" in w for w in record["warnings"])
    assert [s["name"] for s in record["steps"]][::2] == ["keras_to_onnx", "onnx_to_tflite"]
    assert record["notes"]["tflite_route"].startswith("ONNX → onnx2tf") and "NEG" not in record["notes"]["tflite_ops"]
    metrics, gate = record["validation"]["metrics"], record["validation"]["gate"]
    assert metrics["snr_db"] >= gate["min_snr_db"] and metrics["top1_agreement"] >= gate["min_top1_agreement"], metrics
