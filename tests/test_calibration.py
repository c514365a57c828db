"""Calibration and "unknown" maths (tfcnn.evaluation.calibration, tfcnn.models.calibration)
against independent computations: plain loops, brute-force searches, hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfcnn.evaluation.calibration import (
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_ood_rule,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from tfcnn.models.calibration import Calibration, OodRule, ood_scores


def _ece_by_loop(probs, labels, bins=15):
    """ECE written out image by image (no vectorisation, no shared helper)."""
    totals = [[0, 0.0, 0] for _ in range(bins)]  # count, confidence sum, correct
    for row, label in zip(probs, labels, strict=True):
        confidence = max(row)
        b = min(bins - 1, max(0, math.ceil(confidence * bins) - 1))
        totals[b][0] += 1
        totals[b][1] += confidence
        totals[b][2] += int(list(row).index(confidence) == label)
    n = len(labels)
    return sum(c / n * abs(k / c - s / c) for c, s, k in totals if c)


def _random_problem(seed=0, n=2000, classes=10, scale=3.0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, classes)) * 2
    labels = np.array([rng.choice(classes, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
    return true_logits * scale, labels  # overconfident by `scale`


def _softmax(z, t=1.0):
    e = np.exp((z - z.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def test_ece_agrees_with_a_plain_loop_and_a_hand_example():
    logits, labels = _random_problem()
    probs = _softmax(logits)
    assert expected_calibration_error(probs, labels) == pytest.approx(_ece_by_loop(probs, labels))
    # Two images at 0.9 confidence, one right: |0.5 - 0.9| = 0.4; one at 0.6, right: 0.4.
    hand = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    assert expected_calibration_error(hand, [0, 1, 1]) == pytest.approx((2 * 0.4 + 0.4) / 3)
    bins = reliability_bins(hand, [0, 1, 1])
    assert [(b["count"], round(b["accuracy"], 3)) for b in bins] == [(1, 1.0), (2, 0.5)]


def test_perfectly_calibrated_probabilities_have_small_ece():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 50_000)
    right = rng.uniform(size=confidence.size) < confidence  # right as often as it says
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(right, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.01


def test_nll_and_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = [0, 1]
    assert negative_log_likelihood(probs, labels) == pytest.approx(
        -(math.log(0.7) + math.log(0.1)) / 2)
    assert brier_score(probs, labels) == pytest.approx(
        ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.1 ** 2 + 0.9 ** 2 + 0.8 ** 2)) / 2)


def test_the_fitted_temperature_is_the_brute_force_minimum():
    logits, labels = _random_problem(scale=3.0)
    fitted = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 4001))
    nll = [negative_log_likelihood(_softmax(logits, t), labels) for t in grid]
    best = grid[int(np.argmin(nll))]
    assert fitted == pytest.approx(best, rel=0.01)
    assert 2.4 < fitted < 3.6  # the logits were made 3x overconfident
    before = calibration_report(logits, labels, 1.0)
    after = calibration_report(logits, labels, fitted)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]
    assert after["ece_uncalibrated"] == before["ece"]


def test_ood_scores_match_their_definitions():
    z = np.array([[2.0, 1.0, -1.0], [10.0, 10.0, 0.0]])
    logsumexp = np.log(np.exp(z).sum(axis=1))
    np.testing.assert_allclose(ood_scores(z, "energy"), -logsumexp)
    np.testing.assert_allclose(ood_scores(z, "max_logit"), -z.max(axis=1))
    np.testing.assert_allclose(ood_scores(z, "max_probability"), -_softmax(z).max(axis=1))
    with pytest.raises(ValueError, match="expected one of"):
        ood_scores(z, "mahalanobis")


@pytest.mark.parametrize("acceptance", [0.9, 0.95, 0.99])
def test_the_threshold_accepts_the_stated_share_of_its_images(acceptance):
    logits, _ = _random_problem(seed=2, n=5000)
    rule = fit_ood_rule(logits, "energy", acceptance, "validation")
    accepted = float((~rule.unknown(logits)).mean())
    # The quantile's own images: at least the share asked for, and at most one image more.
    assert acceptance <= accepted <= acceptance + 1 / len(logits) + 1e-9
    # On fresh images from the same distribution, close to it.
    fresh, _ = _random_problem(seed=3, n=20000)
    assert abs(float((~rule.unknown(fresh)).mean()) - acceptance) < 0.01


def test_calibration_round_trips_through_its_config():
    rule = OodRule("energy", -3.5, 0.95, "training")
    calibration = Calibration(1.25, rule)
    assert Calibration.from_config(calibration.to_config()) == calibration
    with pytest.raises(ValueError, match="temperature"):
        Calibration(0.0)
