"""Classification metrics from labels and predictions: plain numpy, no TensorFlow.

Confusion matrix, per-class precision / recall / F1, their macro and weighted averages,
and the most-confused pairs; tests check them on hand-made arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MOST_CONFUSED = 5  # pairs listed under "most confused"


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: rows are true classes, columns predictions."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} true labels but {y_pred.size} predictions")
    for name, y in (("true label", y_true), ("prediction", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} out of range 0..{num_classes - 1}: "
                             f"{int(y.min())}..{int(y.max())}")
    flat = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def _ratio(num: float, den: float) -> float:
    # A class never predicted (or absent) has no defined precision (recall); report 0.0,
    # as scikit-learn's zero_division=0 does, so the JSON never holds NaN.
    return float(num / den) if den else 0.0


def per_class_metrics(cm: Any, class_names: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class, in class order."""
    cm = np.asarray(cm)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {len(class_names)} classes")
    rows = []
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        precision = _ratio(tp, int(cm[:, i].sum()))
        recall = _ratio(tp, int(cm[i, :].sum()))
        rows.append({"class": str(name), "precision": round(precision, 6),
                     "recall": round(recall, 6),
                     "f1": round(_ratio(2 * precision * recall, precision + recall), 6),
                     "support": int(cm[i, :].sum())})
    return rows


def average_metrics(per_class: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Macro (plain mean over classes) and weighted (by support) precision, recall and F1."""
    total = sum(r["support"] for r in per_class)
    out = {}
    for kind in ("macro", "weighted"):
        weights = [1.0 if kind == "macro" else r["support"] for r in per_class]
        out[kind] = {key: round(_ratio(sum(w * r[key] for w, r in zip(weights, per_class,
                                                                       strict=True)),
                                       len(per_class) if kind == "macro" else total), 6)
                     for key in ("precision", "recall", "f1")}
    return out


def most_confused(cm: Any, class_names: list[str] | tuple[str, ...],
                  k: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """The k largest off-diagonal cells (ties in class order); zero counts are left out."""
    cm = np.asarray(cm)
    pairs = [(-int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm))
             if i != j and cm[i, j] > 0]
    return [{"true": str(class_names[i]), "predicted": str(class_names[j]), "count": -neg}
            for neg, i, j in sorted(pairs)[:k]]
