"""Metric helpers on hand-made arrays: confusion matrix, per-class table, averages, pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfcnn.evaluation import metrics as ev


def test_confusion_matrix_counts_rows_true_columns_predicted():
    cm = ev.confusion_matrix([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert ev.confusion_matrix(np.array([], int), np.array([], int), 2).tolist() == [[0, 0],
                                                                                     [0, 0]]


@pytest.mark.parametrize(("y_true", "y_pred", "message"), [
    ([0, 1], [0], "2 true labels but 1 predictions"),
    ([0, 3], [0, 1], "true label out of range 0..2"),
    ([0, 1], [-1, 1], "prediction out of range"),
])
def test_confusion_matrix_refuses_bad_labels(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        ev.confusion_matrix(y_true, y_pred, 3)


def test_per_class_precision_recall_f1_support():
    cm = [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    rows = ev.per_class_metrics(cm, ["a", "b", "c"])
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert [r["support"] for r in rows] == [2, 2, 3]
    expected = [(1 / 2, 1 / 2, 1 / 2), (2 / 3, 1.0, 0.8), (1.0, 2 / 3, 0.8)]
    for row, (p, r, f1) in zip(rows, expected, strict=True):
        assert row["precision"] == pytest.approx(p, abs=1e-6)
        assert row["recall"] == pytest.approx(r, abs=1e-6)
        assert row["f1"] == pytest.approx(f1, abs=1e-6)


def test_zero_division_gives_zero_not_nan():
    # Class b is never predicted (and always missed); class c has no images at all.
    cm = [[2, 0, 0], [1, 0, 0], [0, 0, 0]]
    rows = ev.per_class_metrics(cm, ["a", "b", "c"])
    assert rows[0]["precision"] == pytest.approx(2 / 3, abs=1e-6) and rows[0]["recall"] == 1.0
    for row in rows[1:]:
        assert (row["precision"], row["recall"], row["f1"]) == (0.0, 0.0, 0.0)
    assert rows[2]["support"] == 0
    averages = ev.average_metrics(rows)
    json.dumps({"rows": rows, "averages": averages}, allow_nan=False)  # raises on NaN
    assert averages["macro"]["recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert averages["weighted"]["recall"] == pytest.approx(2 / 3, abs=1e-6)


def test_per_class_metrics_checks_the_class_count():
    with pytest.raises(ValueError, match="for 2 classes"):
        ev.per_class_metrics(np.zeros((3, 3), int), ["a", "b"])


def test_most_confused_orders_by_count_then_class_and_skips_zeros():
    cm = [[9, 3, 0, 1], [0, 9, 5, 0], [3, 0, 9, 0], [0, 0, 0, 9]]
    names = ["w", "x", "y", "z"]
    assert ev.most_confused(cm, names, k=3) == [
        {"true": "x", "predicted": "y", "count": 5},
        {"true": "w", "predicted": "x", "count": 3},
        {"true": "y", "predicted": "w", "count": 3},
    ]
    assert len(ev.most_confused(cm, names, k=10)) == 4
    assert ev.most_confused(np.diag([4, 4]), ["a", "b"]) == []
