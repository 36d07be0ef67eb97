"""Metric definitions and gates."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.targets.schema import Gate
from edgeconv.validation import SNR_CAP_DB, check_gate, compare, cosine, snr_db, top1_ties


def test_snr_matches_definition() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(10_000)
    noise = 0.01 * rng.standard_normal(10_000)
    expected = 10 * np.log10(np.sum(ref**2) / np.sum(noise**2))
    assert snr_db(ref, ref + noise) == pytest.approx(expected, rel=1e-9)
    assert snr_db(ref, ref) == SNR_CAP_DB
    assert cosine(ref, 2 * ref) == pytest.approx(1.0)
    assert cosine(ref, -ref) == pytest.approx(-1.0)


def test_top1_agreement_for_class_scores() -> None:
    refs = [[np.array([[0.1, 0.9, 0.0]])], [np.array([[0.8, 0.1, 0.1]])]]
    acts = [[np.array([[0.2, 0.7, 0.1]])], [np.array([[0.1, 0.8, 0.1]])]]
    metrics = compare(["scores"], refs, acts)
    assert metrics.top1_agreement == 0.5 and metrics.samples == 2
    result = check_gate(metrics, Gate(min_top1_agreement=0.9))
    assert not result.passed and "top-1" in result.failures[0]


def test_a_top1_flip_within_the_noise_is_a_near_tie() -> None:
    """16 samples of 10 logits at about 35 dB: one sample's two best classes 0.01 apart swap (every model flips such a
    sample, fp16 included): a near tie (the margin within twice the largest error on the other classes), reported, and
    counted as agreeing by the gate. A flip of a 2.0 margin at the same noise is a changed prediction and fails the
    gate, as does the near tie once the noise elsewhere is below its margin, and as do ties on an output that misses
    another bound (a broken model's noise makes every flip a tie)."""
    rng = np.random.default_rng(0)
    refs = [rng.normal(0, 3, (1, 10)) for _ in range(16)]
    refs[5][0, :2] = [9.0, 8.99]
    noise = [rng.normal(0, 0.05, (1, 10)) for _ in range(16)]
    acts = [r + n for r, n in zip(refs, noise)]
    acts[5][0, :2] = [8.98, 9.0]
    gate = Gate(min_snr_db=30.0, min_top1_agreement=0.99)
    metrics = compare(["logits"], [[r] for r in refs], [[a] for a in acts])
    assert metrics.top1_agreement == pytest.approx(15 / 16) and metrics.outputs[0].top1_ties == pytest.approx(1 / 16)
    assert check_gate(metrics, gate).passed
    result = check_gate(metrics, Gate(min_snr_db=60.0, min_top1_agreement=0.99))
    assert result.failures == ("SNR 35.2 dB < 60.0 dB", "top-1 agreement 0.938 < 0.99")
    spotter = np.array([[0.3105, 0.3, 0.2, 0.1, -0.05, -0.15]])  # the keyword spotter's flip (tflite-dynamic)
    converted = spotter + np.array([[-0.0053, 0.0055, 0.0081, -0.004, 0.002, -0.006]])
    assert top1_ties(spotter, converted)[1].all()  # margin 0.0105 <= 2 x 0.0081
    assert not top1_ties(spotter, spotter + np.array([[-0.0053, 0.0055, 0.004, -0.004, 0.002, -0.003]]))[1].any()
    clean = [a.copy() for a in acts]
    clean[5][0, 2:] = refs[5][0, 2:]  # no noise on the other classes: the swap is beyond it
    assert compare(["logits"], [[r] for r in refs], [[a] for a in clean]).outputs[0].top1_ties == 0.0
    refs[5][0, :2] = [9.0, 7.0]
    metrics = compare(["logits"], [[r] for r in refs], [[a] for a in acts])
    assert metrics.top1_agreement == pytest.approx(15 / 16) and metrics.outputs[0].top1_ties == 0.0
    assert not check_gate(metrics, gate).passed


def test_no_top1_for_feature_maps() -> None:
    x = np.ones((1, 4, 4, 4), dtype=np.float32)
    assert compare(["features"], [[x]], [[x]]).top1_agreement is None


def _detector_outputs(seed: int, n: int = 16) -> list[list[np.ndarray]]:
    """Per sample: boxes [10, 4] float, scores [10] float, topk indices [10] int64 (a detector's post-process)."""
    rng = np.random.default_rng(seed)
    return [[rng.uniform(0, 64, (10, 4)).astype(np.float32), rng.uniform(0, 1, 10).astype(np.float32),
             rng.permutation(100)[:10].astype(np.int64)] for _ in range(n)]


def test_integer_outputs_are_judged_by_exact_match_not_snr() -> None:
    """Detector outputs at 40+ dB with two neighbouring pairs of indices swapped (4 of 160): scored by SNR, the index
    output (a swapped index is a huge 'error') failed the 30 dB gate; now it is 97.5% exact, and SNR covers the floats."""
    refs = _detector_outputs(0)
    rng = np.random.default_rng(1)
    acts = []
    for i, (boxes, scores, idx) in enumerate(refs):
        idx = idx.copy()
        if i in (3, 7):
            idx[[0, 1]] = idx[[1, 0]]  # neighbours with near-equal scores swap places
        acts.append([boxes + rng.normal(0, 0.02, boxes.shape).astype(np.float32),
                     scores + rng.normal(0, 0.002, scores.shape).astype(np.float32), idx])
    metrics = compare(["boxes", "scores", "indices"], refs, acts)
    by_name = {o.name: o for o in metrics.outputs}
    assert [o.kind for o in metrics.outputs] == ["float", "float", "integer"]
    assert by_name["indices"].exact_match == pytest.approx(1 - 4 / 160) and metrics.exact_match == by_name["indices"].exact_match
    assert by_name["indices"].snr_db < 30  # what used to fail the gate
    assert metrics.snr_db == min(by_name["boxes"].snr_db, by_name["scores"].snr_db) > 40
    assert check_gate(metrics, Gate(min_snr_db=30.0, min_top1_agreement=0.97)).passed
    result = check_gate(metrics, Gate(min_snr_db=30.0, min_exact_match=0.99))
    assert result.failures == ("output indices: exact match 0.975 < 0.99 (integer output)",)


def test_gate_failure_names_the_output() -> None:
    refs = _detector_outputs(2)
    acts = [[b, s + np.float32(0.3), i] for b, s, i in refs]  # the scores drift, boxes and indices are exact
    result = check_gate(compare(["boxes", "scores", "indices"], refs, acts), Gate(min_snr_db=30.0))
    assert not result.passed and len(result.failures) == 1 and result.failures[0].startswith("output scores: SNR")


def test_bool_outputs_exact_match() -> None:
    refs = [[np.array([True, False, True, True])] for _ in range(4)]
    acts = [[np.array([True, False, True, i != 0])] for i in range(4)]
    metrics = compare(["mask"], refs, acts)
    assert metrics.outputs[0].kind == "bool" and metrics.exact_match == pytest.approx(15 / 16)
    assert check_gate(metrics, Gate(min_exact_match=0.9)).passed
    assert not check_gate(metrics, Gate(min_exact_match=0.95)).passed


def test_nan_in_the_converted_output_fails_whatever_the_gate() -> None:
    """min(300, nan) is 300: a NaN output used to score the SNR cap and pass an SNR-only gate."""
    refs = [[np.array([[0.1, 0.7, 0.2]], np.float32)] for _ in range(3)]
    acts = [[np.array([[np.nan, 0.7, 0.2]], np.float32)]] + refs[1:]
    metrics = compare(["scores"], refs, acts)
    assert metrics.outputs[0].nonfinite == 1 and metrics.snr_db == -SNR_CAP_DB
    result = check_gate(metrics, Gate(min_snr_db=None))
    assert not result.passed and result.failures == ("1 NaN/Inf value(s) where the source's are finite",)


def test_failed_gate_error_says_what_the_search_did() -> None:
    """No manifest is written when a gate fails, so the error carries the search's summary (and the hint names it)."""
    from types import SimpleNamespace

    from edgeconv.context import QuantizeResult
    from edgeconv.validation_stage import _search_summary

    fallback = {"precision": "int16", "budget": 8, "scored_on": "qnn_htp", "gate_passed_before": False,
                "before": {"snr_db": 26.8}, "after": {"snr_db": 26.9}, "candidates_measured": 8, "seconds": 64.6,
                "nodes": [{"tensor": "add_30"}, {"tensor": "mean"}]}
    summary = _search_summary(SimpleNamespace(quantized=QuantizeResult(fallback=fallback)))
    assert summary is not None
    assert summary["kept"] == ["add_30", "mean"] and summary["scored_on"] == "qnn_htp" and summary["budget"] == 8
    assert _search_summary(SimpleNamespace(quantized=QuantizeResult(fallback={**fallback, "gate_passed_before": True}))) is None
    assert _search_summary(SimpleNamespace(quantized=None)) is None


def _detector(scores: np.ndarray, boxes: np.ndarray, k: int) -> list[np.ndarray]:
    """A top-k post-process as YOLO-style detectors end: picked boxes [1, k, 4], sorted scores [1, k], indices [1, k]."""
    idx = np.argsort(-scores, kind="stable")[:k]
    return [boxes[idx][None].astype(np.float32), scores[idx][None].astype(np.float32), idx[None].astype(np.int64)]


def test_topk_picks_are_compared_by_index_not_position() -> None:
    """Two near-tied detections swap places in the converted model: the same picks in another order are a match."""
    rng = np.random.default_rng(0)
    boxes, scores = rng.random((50, 4)), rng.random(50)
    top = np.argsort(-scores)[:2]
    swapped = scores.copy()
    swapped[top[0]], swapped[top[1]] = scores[top[1]], scores[top[0]]
    swapped[top] = scores[top].mean() + np.array([-1e-4, 1e-4])  # nearly tied, order reversed
    ref, act = _detector(scores, boxes, 10), _detector(swapped, boxes, 10)
    assert (ref[2] != act[2]).any()  # positionally different
    metrics = compare(["boxes", "scores", "indices"], [ref], [act])
    boxes_m, scores_m, indices_m = metrics.outputs
    assert indices_m.exact_match == 1.0 and boxes_m.snr_db == SNR_CAP_DB
    assert {o.aligned_by for o in metrics.outputs} == {"indices"} and scores_m.top1_agreement is None
    assert check_gate(metrics, Gate(min_snr_db=18, min_cosine=0.99, min_top1_agreement=0.98)).passed


def test_topk_pick_far_from_the_cut_off_is_a_mismatch() -> None:
    """A detection the converted model drops although its score is well above the cut-off is an error, not a tie: the
    index output's exact match counts it (and fails the gate); the boxes and scores are judged on the picks both made,
    so the one error is not counted a second time as a box error."""
    rng = np.random.default_rng(1)
    boxes, scores = rng.random((50, 4)), np.linspace(1.0, 0.0, 50)
    worse = scores + rng.normal(0, 1e-4, 50)
    worse[3] = -1.0  # the 4th best detection disappears
    metrics = compare(["boxes", "scores", "indices"], [_detector(scores, boxes, 10)], [_detector(worse, boxes, 10)])
    indices_m = metrics.outputs[2]
    assert indices_m.exact_match == pytest.approx(0.9) and indices_m.ties == 0.0
    assert metrics.outputs[0].snr_db == SNR_CAP_DB  # the other 9 boxes are exact
    result = check_gate(metrics, Gate(min_snr_db=18, min_exact_match=0.98))
    assert not result.passed and result.failures == ("output indices: exact match 0.900 < 0.98 (integer output)",)


def test_topk_tie_at_the_cut_off_is_not_an_error() -> None:
    """The 10th and 11th scores are within the value noise: which one is picked is a tie, reported as such."""
    boxes = np.random.default_rng(2).random((50, 4))
    scores = np.linspace(1.0, 0.0, 50)
    scores[10] = scores[9] - 1e-5
    noisy = scores + np.r_[np.full(9, 2e-4), [-1e-4, 1e-4], np.zeros(39)]  # 10th and 11th trade places
    metrics = compare(["boxes", "scores", "indices"], [_detector(scores, boxes, 10)], [_detector(noisy, boxes, 10)])
    indices_m = metrics.outputs[2]
    assert indices_m.exact_match == 1.0 and indices_m.ties == pytest.approx(0.1)
    assert metrics.outputs[0].snr_db == SNR_CAP_DB  # the tied pick is not compared box to box


def test_integer_output_without_sorted_values_keeps_positional_match() -> None:
    """Token ids beside logits are a sequence, not a top-k set: order matters."""
    logits = np.random.default_rng(3).random((1, 6, 10)).astype(np.float32)
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    metrics = compare(["logits", "ids"], [[logits, ids]], [[logits, ids[:, ::-1].copy()]])
    assert metrics.outputs[1].exact_match == 0.0 and metrics.outputs[1].aligned_by is None


def test_topk_with_repeated_picks_in_the_converted_model_is_compared_by_position() -> None:
    """A broken conversion that picks one index twice: no crash, and the picks are judged as they stand."""
    boxes, scores = np.random.default_rng(4).random((20, 4)), np.linspace(1.0, 0.0, 20)
    ref = _detector(scores, boxes, 4)
    act = [a.copy() for a in ref]
    act[2][0, 1] = act[2][0, 0]
    metrics = compare(["boxes", "scores", "indices"], [ref], [act])
    assert metrics.outputs[2].exact_match == pytest.approx(0.75)
