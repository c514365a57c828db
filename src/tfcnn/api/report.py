"""`tfcnn.Report`: what `Classifier.evaluate` returns, the figures of `tfcnn evaluate`
as Python values (numbers, numpy arrays, matplotlib figures). Evaluating computes;
`Report.save(dir)` writes the report folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# The keys of `tfcnn evaluate --json`, a format that tools read; ensembles and TTA add two.
# Calibration (tfcnn.evaluation.calibration): ECE, NLL and Brier score with the model's
# temperature, and without it (`_uncalibrated`; None for ensembles and TTA).
JSON_KEYS = ("test_accuracy", "test_loss", "per_class", "confusion_matrix", "ece",
             "ece_uncalibrated", "temperature", "nll", "nll_uncalibrated", "brier",
             "brier_uncalibrated")
ENSEMBLE_JSON_KEYS = ("members", "tta")


class Report:
    """An evaluation: `accuracy`, `loss`, `per_class` (precision, recall, f1, support per
    class), `confusion_matrix` (np.ndarray, rows true class, columns predicted), `figures`
    (matplotlib figures by name; shown inline in a notebook), `to_dict()` (the
    `tfcnn evaluate --json` object), `data` (the whole report, as evaluation.json holds it).

    Example:
        >>> report = clf.evaluate(data_dir=data_dir)
        >>> 0 <= report.accuracy <= 1, sorted(report.figures)[:2]
        (True, ['confusion_matrix', 'reliability'])
        >>> sorted(p.name for p in report.save(tmp / "report").iterdir())[:2]
        ['confusion_matrix.png', 'evaluation.json']
    """

    def __init__(self, evaluation: Any, ensemble: bool = False) -> None:
        self._evaluation = evaluation
        self._keys = (*JSON_KEYS, *ENSEMBLE_JSON_KEYS) if ensemble else JSON_KEYS
        self._figures: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The full report dict (what evaluation.json holds)."""
        return self._evaluation.report

    @property
    def accuracy(self) -> float:
        """Test accuracy, a fraction."""
        return float(self.data["test_accuracy"])

    @property
    def loss(self) -> float:
        """Mean cross-entropy on the test set."""
        return float(self.data["test_loss"])

    @property
    def per_class(self) -> list[dict[str, Any]]:
        """One dict per class: class, precision, recall, f1, support."""
        return list(self.data["per_class"])

    @property
    def ece(self) -> float:
        """Expected calibration error of the (calibrated) probabilities, 15 bins."""
        return float(self.data["ece"])

    @property
    def confusion_matrix(self) -> np.ndarray:
        """int64 (classes, classes): row = true class, column = predicted class."""
        return np.asarray(self.data["confusion_matrix"], dtype=np.int64)

    @property
    def figures(self) -> dict[str, Any]:
        """matplotlib Figures: "confusion_matrix", "worst_images" and, for a run's model,
        "training_curves" (drawn once, on first access)."""
        if self._figures is None:
            self._figures = self._evaluation.figures()
        return self._figures

    def to_dict(self) -> dict[str, Any]:
        """The object `tfcnn evaluate --json` prints."""
        return {key: self.data[key] for key in self._keys}

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the report folder (evaluation.json, evaluation.txt, the PNG figures) to
        `folder`, created if needed; returns it. Files are replaced atomically."""
        out = Path(folder)
        self._evaluation.write(out)
        return out

    @property
    def files(self) -> dict[str, str]:
        """What the last `save` wrote: name → path ({} before any)."""
        return dict(self.data.get("files", {}))

    def text(self) -> str:
        """The text report `tfcnn evaluate` prints."""
        from tfcnn.evaluation.report import format_evaluation

        return format_evaluation(self.data, self._evaluation.heading)

    def __repr__(self) -> str:
        return (f"Report(accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
                f"{self.data['num_images']:,} images of {self.data['dataset']})")
