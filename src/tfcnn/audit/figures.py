"""The audit report's image grids: suspected label issues, duplicate and leak pairs.

Drawn as `tfcnn.evaluation.plots` draws: a `matplotlib.figure.Figure` on the Agg canvas
(no pyplot, no backend chosen), written as a PNG atomically. No TensorFlow here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tfcnn.audit.data import AuditData
from tfcnn.audit.labels import LabelIssue
from tfcnn.audit.similar import Pair
from tfcnn.evaluation.plots import save_figure

MAX_ISSUES = 64  # images in the label-issue grid (the most suspect)
MAX_PAIRS = 24   # pairs in a duplicate or leak grid (the closest)
COLUMNS = 8


def _show(ax: object, image: np.ndarray) -> None:
    if image.ndim == 3:
        ax.imshow(image, interpolation="nearest")  # type: ignore[attr-defined]
    else:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255,  # type: ignore[attr-defined]
                  interpolation="nearest")
    ax.set_axis_off()  # type: ignore[attr-defined]


def _grid(cells: int, columns: int, title: str) -> tuple[Figure, list[object]]:
    rows = max(1, math.ceil(cells / columns))
    fig = Figure(figsize=(1.45 * columns, 1.6 * rows + 0.6), layout="constrained")
    fig.suptitle(title)
    axes = [fig.add_subplot(rows, columns, k + 1) for k in range(rows * columns)]
    for ax in axes[cells:]:
        ax.set_axis_off()  # type: ignore[attr-defined]
    return fig, axes


def _short(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def label_issue_grid(data: AuditData, issues: list[LabelIssue],
                     path: str | os.PathLike[str]) -> Path:
    """The most suspect images, each titled "given → suggested" and its score."""
    shown = issues[:MAX_ISSUES]
    fig, axes = _grid(len(shown), COLUMNS,
                      f"Suspected label issues: {len(shown)} most suspect of {len(issues)} "
                      "(given → suggested, probability of the given label)")
    for ax, issue in zip(axes, shown, strict=False):
        _show(ax, data.images[issue.index])
        ax.set_title(f"{_short(issue.given, 6)} → {_short(issue.suggested, 6)}\n"  # type: ignore[attr-defined]
                     f"{issue.score:.2g}", fontsize=8)
    return save_figure(fig, path)


def pair_grid(data: AuditData, pairs: list[Pair], title: str,
              path: str | os.PathLike[str]) -> Path:
    """The closest pairs side by side, each image titled with its label and split."""
    shown = pairs[:MAX_PAIRS]
    fig, axes = _grid(2 * len(shown), COLUMNS,
                      f"{title}: {len(shown)} closest of {len(pairs)} (label, split; distance)")
    names = data.class_names
    for k, pair in enumerate(shown):
        how = "exact" if pair.exact else f"{pair.distance:.4f}"
        for side, index in enumerate((pair.a, pair.b)):
            ax = axes[2 * k + side]
            _show(ax, data.images[index])
            ax.set_title(f"{_short(names[data.labels[index]], 8)}, "  # type: ignore[attr-defined]
                         f"{data.splits[index]}" + (f"\n{how}" if side == 0 else "\n"),
                         fontsize=8)
    return save_figure(fig, path)
