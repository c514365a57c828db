"""The evaluation report's figures: confusion matrix, highest-loss images, training curves,
reliability diagram.

Each function draws one matplotlib figure and writes it as a PNG atomically. Figures are
made with `matplotlib.figure.Figure` on an explicit Agg canvas, never through pyplot: no
backend is selected and no global figure registry is touched, so importing this module
changes nothing for a program that also uses pyplot. No TensorFlow here.

Inputs that cannot make a truthful figure (shapes that disagree, an empty list, a missing
field) raise ValueError naming what was wrong; a figure is never drawn from half the data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tfcnn.core.fsutil import atomic_path

DPI = 100
CURVE_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy")


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as a PNG at `path` (atomically: a half-written file never stands there)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        # format= because the temporary name does not end in .png.
        fig.savefig(tmp, format="png", dpi=DPI)
    return target


def plot_confusion_matrix(cm: Any, class_names: Sequence[str], path: str | os.PathLike[str],
                          title: str = "Confusion matrix") -> Path:
    """`confusion_matrix_figure` written as a PNG at `path`."""
    return save_figure(confusion_matrix_figure(cm, class_names, title), path)


def confusion_matrix_figure(cm: Any, class_names: Sequence[str],
                            title: str = "Confusion matrix") -> Figure:
    """Counts in every cell; colour on a log scale so that the few errors stand out too."""
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.ndim != 2 or cm.shape != (n, n):
        raise ValueError(f"confusion matrix: shape {cm.shape} does not match "
                         f"{n} class names (expected ({n}, {n}))")
    if n == 0 or not np.issubdtype(cm.dtype, np.integer) or (cm < 0).any():
        raise ValueError("confusion matrix: expected non-negative integer counts "
                         f"for at least one class, got dtype {cm.dtype}")
    size = max(5.0, 0.65 * n + 2.5)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    # Zeros are masked (left white): LogNorm cannot place them, and blank reads as "none".
    shown = np.ma.masked_equal(cm, 0)
    image = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(int(cm.max()), 2)))
    fig.colorbar(image, ax=ax, shrink=0.8, label="test images (log scale)")
    threshold = math.sqrt(max(int(cm.max()), 1))  # geometric middle of the log colour scale
    for (i, j), count in np.ndenumerate(cm):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8 if n <= 12 else 6,
                    color="white" if count > threshold else "black")
    ticks = np.arange(n)
    long_names = max(len(str(c)) for c in class_names) > 3
    ax.set_xticks(ticks, labels=[str(c) for c in class_names],
                  rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(ticks, labels=[str(c) for c in class_names])
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    total, correct = int(cm.sum()), int(np.trace(cm))
    accuracy = f", accuracy {100 * correct / total:.2f}%" if total else ""
    ax.set_title(f"{title} ({total:,} images{accuracy})")
    FigureCanvasAgg(fig)  # renders with Agg, whatever pyplot uses
    return fig


def plot_worst_images(images: Any, true: Sequence[int], pred: Sequence[int],
                      confidence: Sequence[float], class_names: Sequence[str],
                      path: str | os.PathLike[str],
                      title: str = "Highest-loss test images") -> Path:
    """`worst_images_figure` written as a PNG at `path`."""
    figure = worst_images_figure(images, true, pred, confidence, class_names, title)
    return save_figure(figure, path)


def worst_images_figure(images: Any, true: Sequence[int], pred: Sequence[int],
                        confidence: Sequence[float], class_names: Sequence[str],
                        title: str = "Highest-loss test images") -> Figure:
    """A grid of images, each titled with its true and predicted class and the confidence.

    `images`: (N, H, W) or (N, H, W, C) uint8 (0-255) or float (0-1); `confidence` is the
    probability the model gave its predicted class.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"images: expected a non-empty stack (N, H, W[, C]), "
                         f"got shape {images.shape}")
    n = len(images)
    for name, values in (("true", true), ("pred", pred), ("confidence", confidence)):
        if len(values) != n:
            raise ValueError(f"{name}: {len(values)} values for {n} images")
    for name, values in (("true", true), ("pred", pred)):
        bad = [int(v) for v in values if not 0 <= int(v) < len(class_names)]
        if bad:
            raise ValueError(f"{name}: class index {bad[0]} is out of range for "
                             f"{len(class_names)} class names")
    vmax = 255 if images.dtype == np.uint8 else 1.0
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.3 * cols, 2.5 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        if images.ndim == 4:  # colour photos in their own colours (RGB or RGBA)
            ax.imshow(images[k], interpolation="nearest")
        else:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        t, p = int(true[k]), int(pred[k])
        ax.set_title(f"true {class_names[t]}\npredicted {class_names[p]} "
                     f"({100 * float(confidence[k]):.0f}%)", fontsize=9,
                     color="black" if t == p else "firebrick")
    fig.suptitle(title, fontsize=13)
    FigureCanvasAgg(fig)  # renders with Agg, whatever pyplot uses
    return fig


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_training_curves(epochs: list[dict[str, Any]], path: str | os.PathLike[str],
                         title: str = "Training curves") -> Path:
    """`training_curves_figure` written as a PNG at `path`."""
    return save_figure(training_curves_figure(epochs, title), path)


def training_curves_figure(epochs: list[dict[str, Any]],
                           title: str = "Training curves") -> Figure:
    """Loss and accuracy per epoch, train and test, from metrics.json's epoch records.

    Test figures may be None (a run that held out no images): the test line is then left
    out where they are missing, and the legend says so when none is there at all.
    """
    if not epochs:
        raise ValueError("epochs: no epoch records to plot")
    for index, record in enumerate(epochs):
        missing = [f for f in CURVE_FIELDS if not _numeric(record.get(f))
                   and not (f.startswith("test_") and record.get(f, 0) is None)]
        if missing:
            raise ValueError(f"epoch record {index}: missing or non-numeric "
                             f"{', '.join(missing)}")
    x = [r["epoch"] for r in epochs]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, "loss", "Loss (cross-entropy)"),
                           (acc_ax, "accuracy", "Accuracy")):
        ax.plot(x, [r[key] for r in epochs], marker="o", label="train")
        test = [math.nan if r[f"test_{key}"] is None else r[f"test_{key}"] for r in epochs]
        has_test = not all(math.isnan(v) for v in test)
        ax.plot(x, test, marker="s", label="test" if has_test else "test (no held-out images)")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0] + " per epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    fig.suptitle(title, fontsize=13)
    FigureCanvasAgg(fig)  # renders with Agg, whatever pyplot uses
    return fig


def reliability_figure(bins: list[dict[str, Any]], title: str = "Reliability",
                       ece: float | None = None) -> Figure:
    """The reliability diagram: accuracy against mean confidence per confidence bin
    (`tfcnn.evaluation.calibration.reliability_bins`), the diagonal being perfect
    calibration; beneath it, how many images fall in each bin."""
    if not bins:
        raise ValueError("bins: no images to draw a reliability diagram from")
    fig = Figure(figsize=(5.5, 6.2), layout="constrained")
    ax, counts = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    widths = [b["high"] - b["low"] for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=widths, edgecolor="black",
           alpha=0.7, label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o",
            color="tab:red", label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(title + (f" (ECE {ece:.4f})" if ece is not None else ""))
    counts.bar(centres, [b["count"] for b in bins], width=widths, edgecolor="black")
    counts.set_yscale("log")
    counts.set_xlabel("Confidence (top probability)")
    counts.set_ylabel("Images")
    FigureCanvasAgg(fig)
    return fig
