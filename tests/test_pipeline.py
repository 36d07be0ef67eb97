"""Within one run, targets share identical steps (edgeconv/pipeline.py): each target's manifest still says what the
shared step did, and a quantize step is shared only between targets with the same gate (the accuracy fallback searches
until the gate passes, so the gate decides the quantized model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import convert, target_record


def _steps(record: dict[str, Any]) -> dict[str, bool]:
    return {s["name"]: bool(s.get("reused")) for s in record["steps"]}


def test_a_shared_step_reports_its_notes_in_every_target(digits: Any, tmp_path: Path) -> None:
    manifest = convert(digits.pt2, ["tflite-fp32", "tflite-int8"], tmp_path / "out", calib=str(digits.calib),
                       eval=str(digits.eval), input_shapes={"image": (1, 1, 8, 8)})
    first, second = target_record(manifest, "tflite-fp32"), target_record(manifest, "tflite-int8")
    normalise = "normalise + fuse gelu + decompose maxpool_ceil, neg"
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
