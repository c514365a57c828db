"""`Prediction`: one image's answer (the top class, its probability, the top k), shared by
`tfcnn predict`, `Classifier.predict`, `tfcnn explain` and the server's JSON answers.

Plain Python and numpy: no TensorFlow. `to_dict()` is the `predict --json` object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    Attributes: `label` (the class name), `index` (its output index), `probability`,
    `top_k` (list of (label, probability), most likely first), `source` (a file path, or a
    description such as "array[3]" for in-memory inputs), `unknown` (True when the image is
    unlike the model's training images, by the model's fitted rule: the label is a guess).

    Example:
        >>> p = Prediction.from_probabilities([0.1, 0.7, 0.2], ["a", "b", "c"], top_k=2)
        >>> p.label, p.index, p.top_k, p.unknown
        ('b', 1, [('b', 0.7), ('c', 0.2)], False)
    """

    label: str
    index: int
    probability: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    source: str = ""
    unknown: bool = False

    @classmethod
    def from_probabilities(cls, probs: Any, class_names: list[str] | tuple[str, ...],
                           top_k: int = 3, source: str = "", unknown: bool = False
                           ) -> Prediction:
        """The prediction for one row of class probabilities: the `top_k` classes (capped at
        the number of classes), most likely first, ties in class order; probabilities are
        rounded to 6 decimals as in `predict --json`."""
        row = np.asarray(probs, dtype=np.float64)
        best = np.argsort(-row, kind="stable")[:min(top_k, row.shape[0])]
        tops = [(str(class_names[i]), round(float(row[i]), 6)) for i in best]
        return cls(label=tops[0][0], index=int(best[0]), probability=tops[0][1], top_k=tops,
                   source=source, unknown=bool(unknown))

    def to_dict(self) -> dict[str, Any]:
        """`{"file", "label", "index", "probability", "unknown", "top_k": [{"label",
        "probability"}]}`, the object `tfcnn predict --json` prints for one image."""
        return {"file": self.source, "label": self.label, "index": self.index,
                "probability": self.probability, "unknown": self.unknown,
                "top_k": [{"label": label, "probability": p} for label, p in self.top_k]}
