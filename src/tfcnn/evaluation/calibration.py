"""How far a model's probabilities can be trusted, and fitting what makes them trustworthy.

Plain numpy, tested against independent computations (tests/test_calibration.py):

- `expected_calibration_error` (ECE, Naeini et al. 2015; Guo et al. 2017): images binned by
  their top probability (15 equal-width bins of [0, 1]); the mean, weighted by bin size, of
  |accuracy − mean confidence| in each bin. 0: "90% sure" is right 90% of the time.
- `negative_log_likelihood` (mean −log p(true class)) and `brier_score` (mean squared
  distance of the probability vector from the one-hot truth, summed over classes).
- `reliability_bins`: per bin, its mean confidence, accuracy and count (the diagram).
- `fit_temperature`: the T > 0 minimising the NLL of softmax(logits / T) on held-out
  images (temperature scaling: one parameter, so it cannot change which class wins). The
  NLL is convex in 1/T; a golden-section search over log T in [0.05, 20] finds it to 1e-4.
- `fit_ood_rule`: the threshold on an out-of-distribution score that accepts a stated
  share of in-distribution images (the `acceptance` quantile of their scores).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfcnn.models.calibration import OodRule, ood_scores
from tfcnn.models.trained import log_softmax, softmax

BINS = 15
T_RANGE = (0.05, 20.0)


def _labels(labels: Any) -> np.ndarray:
    return np.asarray(labels).astype(np.int64).ravel()


def expected_calibration_error(probs: Any, labels: Any, bins: int = BINS) -> float:
    """ECE of (N, classes) probabilities against labels (N,), `bins` equal-width bins."""
    rows = reliability_bins(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows)
                 / total) if total else 0.0


def reliability_bins(probs: Any, labels: Any, bins: int = BINS) -> list[dict[str, Any]]:
    """One dict per non-empty bin: "low", "high" (its edges), "confidence" (mean top
    probability), "accuracy" (share right), "count". A top probability of exactly 1 falls in
    the last bin; bins are (low, high], the first [0, high]."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = _labels(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        member = index == b
        if member.any():
            rows.append({"low": round(float(edges[b]), 6), "high": round(float(edges[b + 1]), 6),
                         "confidence": float(confidence[member].mean()),
                         "accuracy": float(correct[member].mean()),
                         "count": int(member.sum())})
    return rows


def negative_log_likelihood(probs: Any, labels: Any, floor: float = 1e-12) -> float:
    """Mean −log p(true class) (floored, so a confident mistake stays finite)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = _labels(labels)
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], floor)).mean())


def brier_score(probs: Any, labels: Any) -> float:
    """Mean over images of Σ_classes (p − one-hot)²: 0 perfect, 2 worst."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = _labels(labels)
    target = np.zeros_like(probs)
    target[np.arange(len(labels)), labels] = 1.0
    return float(((probs - target) ** 2).sum(axis=1).mean())


def _nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: Any, labels: Any, tolerance: float = 1e-4) -> float:
    """The temperature minimising the NLL of softmax(logits / T) against `labels`."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = _labels(labels)
    if not len(labels):
        raise ValueError("fit_temperature: no images")
    low, high = (math.log(t) for t in T_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = (_nll_at(logits, labels, math.exp(x)) for x in (a, b))
    while high - low > tolerance:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _nll_at(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _nll_at(logits, labels, math.exp(b))
    return round(math.exp((low + high) / 2), 4)


def fit_ood_rule(logits: Any, score: str = "energy", acceptance: float = 0.95,
                 fitted_on: str = "validation") -> OodRule:
    """The rule accepting `acceptance` of these (in-distribution) images: its threshold is
    their scores' `acceptance` quantile (higher scores are less familiar)."""
    if not 0 < acceptance < 1:
        raise ValueError(f"acceptance: expected a fraction between 0 and 1, got {acceptance}")
    scores = ood_scores(np.asarray(logits), score)
    if not len(scores):
        raise ValueError("fit_ood_rule: no images")
    threshold = float(np.quantile(scores, acceptance, method="higher"))
    return OodRule(score, round(threshold, 6), acceptance, fitted_on)


def calibration_report(logits: Any, labels: Any, temperature: float) -> dict[str, Any]:
    """The calibration figures `tfcnn evaluate` reports, before and after the temperature:
    ece, nll, brier (calibrated), their `_uncalibrated` twins, temperature, bins."""
    logits = np.asarray(logits)
    plain, scaled = softmax(logits), softmax(logits, temperature)
    return {"temperature": float(temperature),
            "ece": round(expected_calibration_error(scaled, labels), 6),
            "ece_uncalibrated": round(expected_calibration_error(plain, labels), 6),
            "nll": round(negative_log_likelihood(scaled, labels), 6),
            "nll_uncalibrated": round(negative_log_likelihood(plain, labels), 6),
            "brier": round(brier_score(scaled, labels), 6),
            "brier_uncalibrated": round(brier_score(plain, labels), 6),
            "reliability": reliability_bins(scaled, labels)}


def probability_report(probs: Any, labels: Any) -> dict[str, Any]:
    """The calibration figures of probabilities alone (an ensemble's average, TTA): ece,
    nll, brier and bins; no temperature of their own (each member applies its own)."""
    probs = np.asarray(probs, dtype=np.float64)
    return {"temperature": None, "ece": round(expected_calibration_error(probs, labels), 6),
            "ece_uncalibrated": None,
            "nll": round(negative_log_likelihood(probs, labels), 6), "nll_uncalibrated": None,
            "brier": round(brier_score(probs, labels), 6), "brier_uncalibrated": None,
            "reliability": reliability_bins(probs, labels)}
