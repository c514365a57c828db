"""`AuditReport`: what an audit found, as an object, as JSON (`audit.json`, `--json`) and as
text (`summary.txt`, what `tfcnn audit` prints).

JSON keys: `dataset`, `images`, `classes` (name, count, train, test, share per class),
`balance` (largest, smallest, imbalance_ratio), `label_issues` (ranked `{"file", "given",
"suggested", "score", "suggested_probability"}`), `duplicates` and `leaks` (pairs `{"a", "b",
"distance", "exact", "labels", "splits"}`, closest first), `counts` (full counts of each list,
which `MAX_PAIRS` may cut), `odd_images` (`{"file", "kind", "detail"}`), `unreadable`
(`{"file", "reason"}`), `folds` (each fold's run), `settings`, `seconds`, `notes`, `report`
(the folder) and `figures`. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.audit.budget import describe_seconds


@dataclass
class AuditReport:
    """The findings of `tfcnn.audit(...)`; `to_json()` is `tfcnn audit --json`'s object.

    Attributes (lists of dicts, as in the JSON): `label_issues`, `duplicates`, `leaks`,
    `odd_images`, `unreadable`, `folds`; `classes`, `balance`, `settings`, `seconds`, `notes`;
    `probabilities` (N, classes) the out-of-sample probabilities of the images in `files`
    order; `path` the report folder.
    """

    dataset: str
    files: list[str]
    class_names: tuple[str, ...]
    classes: list[dict[str, Any]]
    balance: dict[str, Any]
    label_issues: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    leaks: list[dict[str, Any]]
    counts: dict[str, int]
    odd_images: list[dict[str, Any]]
    unreadable: list[dict[str, str]]
    folds: list[dict[str, Any]]
    settings: dict[str, Any]
    seconds: dict[str, float]
    notes: list[str]
    path: Path
    probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    figures: list[str] = field(default_factory=list)
    fix_rows: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (see the module doc for its keys)."""
        return {"dataset": self.dataset, "images": len(self.files),
                "classes": self.classes, "balance": self.balance,
                "label_issues": self.label_issues, "duplicates": self.duplicates,
                "leaks": self.leaks, "counts": self.counts, "odd_images": self.odd_images,
                "unreadable": self.unreadable, "folds": self.folds,
                "settings": self.settings, "seconds": self.seconds, "notes": self.notes,
                "report": str(self.path), "figures": self.figures}

    def write_fixes(self, path: str | Path) -> Path:
        """A CSV of the findings to edit, then `tfcnn audit --apply` (`tfcnn.audit.fixes`)."""
        from tfcnn.audit.fixes import write_fixes

        return write_fixes(self.fix_rows, path)

    def summary(self) -> str:
        """The findings in a few lines of text (summary.txt)."""
        lines = [self._images_line(), self._classes_line(), self._training_line(),
                 *self._issue_lines(), self._pairs_line(), self._odd_line()]
        if self.unreadable:
            first = self.unreadable[0]
            lines.append(f"Unreadable files: {len(self.unreadable)} (left out; first: "
                         f"{first['file']}: {first['reason']})")
        lines += [f"Note: {note}" for note in self.notes]
        lines.append(f"Report: {self.path} (audit.json, summary.txt"
                     + "".join(f", {name}" for name in self.figures) + ")")
        return "\n".join(lines)

    def _images_line(self) -> str:
        train = sum(c["train"] for c in self.classes)
        test = sum(c["test"] for c in self.classes)
        split = f"{train:,} train, {test:,} test" if test else "no test split"
        return (f"Audit of {self.dataset}: {len(self.files):,} images ({split}), "
                f"{len(self.classes)} classes")

    def _classes_line(self) -> str:
        counts = ", ".join(f"{c['name']} {c['count']:,}" for c in self.classes[:20])
        more = f", ... ({len(self.classes) - 20} more)" if len(self.classes) > 20 else ""
        b = self.balance
        ratio = "none" if b["imbalance_ratio"] is None else f"{b['imbalance_ratio']:.2f}"
        return (f"Classes: {counts}{more}; imbalance ratio {ratio} "
                f"(largest {b['largest']}, smallest {b['smallest']})")

    def _training_line(self) -> str:
        epochs = sorted({f["epochs"] for f in self.folds})
        each = "-".join(str(e) for e in (epochs[0], epochs[-1]) if e) if len(epochs) > 1 \
            else str(epochs[0] if epochs else 0)
        held = sum(f["held_out"] for f in self.folds)
        agree = sum(f["agreement"] * f["held_out"] for f in self.folds) / max(held, 1)
        budget = self.settings.get("time_budget_s")
        limit = f" (budget {describe_seconds(budget)})" if budget else " (no time budget)"
        return (f"Cross-training: {len(self.folds)} folds of {each} epochs "
                f"({self.settings['network']}), "
                f"{describe_seconds(self.seconds['cross_training'])}{limit}; "
                f"{100 * agree:.1f}% of the held-out images predicted as labelled")

    def _issue_lines(self) -> list[str]:
        n = len(self.label_issues)
        share = 100 * n / max(len(self.files), 1)
        lines = [f"Label issues: {n:,} suspected ({share:.1f}% of the images)"
                 + (", the most suspect:" if n else "")]
        lines += [f"  {i['file']}: given {i['given']}, suggested {i['suggested']} "
                  f"(probability of the given label {i['score']:.4f})"
                  for i in self.label_issues[:10]]
        return lines

    def _pairs_line(self) -> str:
        c = self.counts
        return (f"Duplicates within a split: {c['duplicates_exact']:,} exact, "
                f"{c['duplicates_near']:,} near; leaks across train/test: "
                f"{c['leaks_exact']:,} exact, {c['leaks_near']:,} near; "
                f"{c['pairs_with_different_labels']:,} pairs carry different labels")

    def _odd_line(self) -> str:
        kinds: dict[str, int] = {}
        for odd in self.odd_images:
            kinds[odd["kind"]] = kinds.get(odd["kind"], 0) + 1
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        return f"Odd images: {parts}"
