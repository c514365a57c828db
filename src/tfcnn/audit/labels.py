"""Label issues: images whose given label the out-of-sample probabilities contradict.

cleanlab's confident learning (`cleanlab.filter.find_label_issues`, its numpy core) estimates
how many images of each given class carry another class's label, from the joint counts of
given and confidently predicted labels, and flags that many per class: with
`filter_by="prune_by_class"`, the ones whose given label has the lowest probability. Issues
are ranked by that probability ("self-confidence", lowest first): the `score` of an issue is
the probability the fold model gave its given label (0 to 1, lower: more surely wrong), and
the suggested label is the most probable class.

`prune_by_class` was chosen by measurement on the out-of-sample probabilities of two
6,000-digit sets with 5% of the labels flipped, two fold networks each (precision / recall,
mean of the 4): prune_by_class 0.940 / 0.975, cleanlab's default prune_by_noise_rate
0.932 / 0.941, both 0.966 / 0.929, confident_learning 0.979 / 0.888, predicted_neq_given
0.746 / 1.000. The audit as shipped: docs/benchmarks.md, "Audit".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

FILTER_BY = "prune_by_class"


@dataclass(frozen=True)
class LabelIssue:
    """A suspected wrong label: the image, its given and suggested class, the score."""

    index: int
    file: str
    given: str
    suggested: str
    score: float                  # probability of the given label (lower: more suspect)
    suggested_probability: float  # probability of the suggested label

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "given": self.given, "suggested": self.suggested,
                "score": round(self.score, 6),
                "suggested_probability": round(self.suggested_probability, 6)}


def find_issue_indices(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of the suspected wrong labels, most suspect first (see the module doc)."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        # cleanlab warns about classes it finds no issue in, or that are tiny: the report
        # shows the class counts, and a warning here would reach the user unasked.
        warnings.simplefilter("ignore")
        ranked = find_label_issues(labels, probabilities, filter_by=FILTER_BY,
                                   return_indices_ranked_by="self_confidence", n_jobs=1,
                                   verbose=False)
    return np.asarray(ranked, dtype=np.int64)


def label_issues(labels: np.ndarray, probabilities: np.ndarray, files: list[str],
                 class_names: tuple[str, ...]) -> list[LabelIssue]:
    """The ranked `LabelIssue`s of images with `labels` and out-of-sample `probabilities`."""
    issues = []
    for i in find_issue_indices(labels, probabilities):
        row = probabilities[i]
        best = int(row.argmax())
        issues.append(LabelIssue(int(i), files[i], class_names[labels[i]], class_names[best],
                                 float(row[labels[i]]), float(row[best])))
    return issues
