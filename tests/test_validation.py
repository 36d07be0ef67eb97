"""Metric definitions and gates."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.targets.schema import Gate
from edgeconv.validation import SNR_CAP_DB, check_gate, compare, cosine, snr_db


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


def test_no_top1_for_feature_maps() -> None:
    x = np.ones((1, 4, 4, 4), dtype=np.float32)
    assert compare(["features"], [[x]], [[x]]).top1_agreement is None
