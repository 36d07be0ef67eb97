"""The accuracy-gate policy (docs/profiles.md, "Accuracy gates"): every built-in profile's gate is at least as strict as
the floor of its precision, and profiles of one precision agree across families (an int8 model is not judged at 10 dB
for LiteRT and 18 dB for ONNX Runtime). A user would reject an int8 classifier that changes more than 2 % of its
decisions, or more than one point of labelled top-1, whatever chip it is for."""

from __future__ import annotations

from collections import defaultdict

import pytest

from edgeconv.targets import builtin_profiles

# precision → (min_snr_db, min_cosine, min_top1_agreement, max_task_drop): the loosest values a built-in gate may have
FLOORS: dict[str, tuple[float, float, float, float | None]] = {
    "fp32": (40.0, 0.9999, 0.99, None),
    "fp16": (30.0, 0.999, 0.98, 0.5),
    "int16": (25.0, 0.995, 0.98, 0.5),
    "int16x8": (25.0, 0.995, 0.98, 0.5),
    "w8": (25.0, 0.995, 0.98, 1.0),
    "dynamic": (18.0, 0.99, 0.98, 1.0),
    "int8": (18.0, 0.99, 0.98, 1.0),
    "w8a8": (18.0, 0.99, 0.98, 1.0),
    "palettize6": (20.0, 0.99, 0.98, 1.0),
    "palettize4": (15.0, 0.98, 0.95, 2.0),
    "int4": (15.0, 0.98, 0.95, 2.0),  # 4-bit weights, as palettize4
}
# 8-bit activations on every chip: one gate, whichever family (cpu, onnx, hexagon, tflite, tensorrt, openvino,
# executorch, coreml)
INT8_ACTIVATIONS = ("int8", "w8a8")

PROFILES = builtin_profiles()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_gate_meets_its_precision_floor(profile) -> None:
    precision = profile.quantize.precision
    assert precision in FLOORS, f"{profile.name}: precision {precision!r} has no gate floor here: add one (and to the doc)"
    snr, cosine, top1, task_drop = FLOORS[precision]
    gate = profile.validate.gate
    assert gate.min_snr_db is not None and gate.min_snr_db >= snr, (profile.name, gate)
    assert gate.min_cosine is not None and gate.min_cosine >= cosine, (profile.name, gate)
    assert gate.min_top1_agreement is not None and gate.min_top1_agreement >= top1, (profile.name, gate)
    if task_drop is not None:  # a labelled --eval set is judged on the task, in points
        assert gate.max_task_drop is not None and gate.max_task_drop <= task_drop, (profile.name, gate)


def test_int8_gates_agree_across_families() -> None:
    gates = defaultdict(set)
    families = set()
    for profile in PROFILES:
        if profile.quantize.precision in INT8_ACTIVATIONS:
            gate = profile.validate.gate
            gates["snr"].add(gate.min_snr_db)
            gates["cosine"].add(gate.min_cosine)
            gates["top1"].add(gate.min_top1_agreement)
            gates["task"].add(gate.max_task_drop)
            families.add(profile.family)
    assert {"cpu", "onnx", "hexagon", "tflite", "tensorrt", "openvino", "executorch", "coreml"} <= families
    assert {k: sorted(v) for k, v in gates.items()} == {"snr": [18.0], "cosine": [0.99], "top1": [0.98], "task": [1.0]}


def test_the_reported_cases_now_fail() -> None:
    """Issue 15: tflite-int8 passed at SNR 10 dB; a face / no-face classifier at top-1 agreement 0.917 passed
    hexagon-int8. Both are rejected by the gates now."""
    from edgeconv.validation import Metrics, check_gate

    by_name = {p.name: p for p in PROFILES}
    ten_db = Metrics(snr_db=10.5, cosine=0.96, max_abs=1.0, mean_abs=0.1, top1_agreement=1.0)
    assert not check_gate(ten_db, by_name["tflite-int8"].validate.gate).passed
    face = Metrics(snr_db=22.0, cosine=0.995, max_abs=1.0, mean_abs=0.1, top1_agreement=0.917)
    result = check_gate(face, by_name["hexagon-int8"].validate.gate)
    assert not result.passed and any("top-1 agreement 0.917 < 0.98" in f for f in result.failures)
