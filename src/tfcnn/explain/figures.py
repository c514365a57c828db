"""The explanation figures: one image explained, a convolution's feature maps as a grid, the
first layer's filters; and small PNG images for the server (heatmap overlays, map grids).

Figures use `matplotlib.figure.Figure` on an explicit Agg canvas, never pyplot (as
`tfcnn.evaluation.plots`): importing this module selects no backend and registers no
figure; `save_and_close` empties a figure once written, so a long run holds one at a time.
PNGs are written atomically. No TensorFlow here.

Layouts are fixed margins in inches, not matplotlib's constrained layout: that layout
measured every tick label twice per save and took about half of each figure's time (an
explanation figure 0.45 s against 0.24 s, a 16-channel grid 0.49 s against 0.30 s;
docs/benchmarks.md, "Explanations at scale").
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from PIL import Image

from tfcnn.core.fsutil import atomic_path
from tfcnn.explain.explanation import SIGNED, TITLES

DPI = 100


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as a PNG atomically (Agg, whatever pyplot uses); returns the path."""
    FigureCanvasAgg(fig)
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return target


def save_and_close(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """`save_png`, then empty `fig` (its axes and images), so that their memory goes at
    once rather than when the cycle collector finds them; returns the path."""
    try:
        return save_png(fig, path)
    finally:
        fig.clear()


def _margins(fig: Figure, width: float, height: float, *, left: float = 0.15,
             right: float = 0.15, bottom: float = 0.15, top: float = 0.6,
             wspace: float = 0.2, hspace: float = 0.2) -> None:
    """Fixed margins (inches) around the subplots of a `width`×`height` inch figure."""
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace, hspace=hspace)


def _show_input(ax: Any, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")


def _show_heatmap(ax: Any, fig: Figure, image: np.ndarray, heat: np.ndarray,
                  method: str) -> None:
    _show_input(ax, image * 0.7)  # dimmed a little: the colours read over it
    signed = method in SIGNED
    ax.imshow(heat_rgba(heat, signed), interpolation="nearest")
    bound = float(np.abs(heat).max()) or 1.0
    norm = TwoSlopeNorm(0.0, -bound, bound) if signed else Normalize(0.0, 1.0)
    fig.colorbar(ScalarMappable(norm, colormaps["bwr" if signed else "jet"]), ax=ax,
                 shrink=0.75)


def explanation_figure(explanation: Any) -> Figure:
    """The input as seen, a bar chart of the top classes, each method's heatmap over it."""
    methods = list(explanation.heatmaps)
    cols = 2 + len(methods)
    width, height = 3.1 * cols, 3.3
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    _margins(fig, width, height, bottom=0.4, top=0.65, wspace=0.25)
    image = np.asarray(explanation.image, dtype=np.float32)
    h, w = image.shape[:2]
    _show_input(axes[0], image)
    axes[0].set_title(f"Input as seen ({h}×{w})", fontsize=10)
    axes[0].set_axis_off()
    pred = explanation.prediction
    labels = [str(label) for label, _ in pred.top_k][::-1]
    probs = [p for _, p in pred.top_k][::-1]
    bars = axes[1].barh(range(len(labels)), probs, color="#9fb5d9")
    bars[-1].set_color("#2f6fdb")
    for bar, label, p in zip(bars, labels, probs, strict=True):  # names inside: any length
        axes[1].text(0.02, bar.get_y() + bar.get_height() / 2, f"{label}  {100 * p:.1f}%",
                     va="center", fontsize=9, clip_on=True)
    axes[1].set_yticks([])
    axes[1].set_xlim(0, 1)
    axes[1].set_title(f"Top {len(labels)}", fontsize=10)
    for ax, method in zip(axes[2:], methods, strict=True):
        _show_heatmap(ax, fig, image, np.asarray(explanation.heatmaps[method]), method)
        ax.set_title(TITLES.get(method, method), fontsize=10)
        ax.set_axis_off()
    source = f"{pred.source}: " if pred.source else ""
    fig.suptitle(f"{source}predicted {pred.label} ({100 * pred.probability:.1f}%), "
                 f"explaining {explanation.target_label}", fontsize=11)
    return fig


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, max(1, math.ceil(math.sqrt(count))))
    return math.ceil(count / cols), cols


def _grid_figure(count: int, cell: float) -> tuple[Figure, np.ndarray]:
    """A figure of `count` cells of `cell` inches in a near-square grid, axes off."""
    rows, cols = _grid(count)
    width, height = cell * cols + 0.4, cell * rows + 0.9
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    _margins(fig, width, height, left=0.2, right=0.2, bottom=0.1, top=0.8, wspace=0.1,
             hspace=0.25)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def feature_map_figure(name: str, maps: np.ndarray,
                       channels: Sequence[int] | None = None) -> Figure:
    """One convolution's feature maps (H'×W'×C') as a grid, each channel scaled alone.

    `channels`: which channels, in order (default: all); each tile is titled with its
    channel's index, and the title says when only some are shown.
    """
    shown = list(range(maps.shape[-1])) if channels is None else [int(k) for k in channels]
    fig, axes = _grid_figure(max(1, len(shown)), 1.3)
    for ax, k in zip(axes.flat, shown, strict=False):
        ax.imshow(maps[..., k], cmap="viridis", interpolation="nearest")
        ax.set_title(str(k), fontsize=7)
    more = (f", the {len(shown)} strongest of {maps.shape[-1]}"
            if len(shown) < maps.shape[-1] else "")
    fig.suptitle(f"{name}\n{maps.shape[0]}×{maps.shape[1]}×{maps.shape[2]} feature maps"
                 f"{more}", fontsize=10)  # two lines: a long layer name fits 4 columns
    return fig


def filters_figure(name: str, kernel: np.ndarray, max_filters: int = 64) -> Figure:
    """A convolution's filters (k×k×in×out): grey for one input channel, RGB for three,
    else the mean over input channels; each filter scaled alone, diverging colours."""
    count = min(kernel.shape[-1], max_filters)
    fig, axes = _grid_figure(count, 1.1)
    for k, ax in enumerate(axes.flat[:count]):
        f = kernel[..., k]
        if f.shape[-1] == 3:
            span = float(np.abs(f).max()) or 1.0
            ax.imshow(np.clip(f / (2 * span) + 0.5, 0, 1), interpolation="nearest")
        else:
            g = f.mean(axis=-1)
            bound = float(np.abs(g).max()) or 1.0
            ax.imshow(g, cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
    fig.suptitle(f"{name}: {count} filters, {kernel.shape[0]}×{kernel.shape[1]}\n"
                 "(red positive, blue negative)", fontsize=10)
    return fig


# --- small images for the server ---------------------------------------------------------

def png_data_url(pixels: np.ndarray) -> str:
    """uint8 H×W, H×W×3 or H×W×4 pixels as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heat_rgba(heat: np.ndarray, signed: bool = False) -> np.ndarray:
    """uint8 H×W×4: `jet` colours (or `bwr` about 0 for signed maps), opacity rising with
    the value's magnitude, so the input shows through where the map is low."""
    heat = np.asarray(heat, dtype=np.float32)
    if signed:
        bound = float(np.abs(heat).max()) or 1.0
        rgba = colormaps["bwr"](heat / (2 * bound) + 0.5)
        rgba[..., 3] = np.abs(heat) / bound
    else:
        rgba = colormaps["jet"](np.clip(heat, 0, 1))
        rgba[..., 3] = 0.8 * np.clip(heat, 0, 1)  # 0 where nothing: the input shows
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def map_grid(maps: np.ndarray, max_channels: int = 32, gap: int = 1) -> np.ndarray:
    """uint8 grey mosaic of a layer's H'×W'×C' maps (each channel scaled to 0-255 alone),
    `gap` pixels between tiles: one small PNG per layer instead of one per channel."""
    channels = min(maps.shape[-1], max_channels)
    rows, cols = _grid(channels)
    h, w = maps.shape[:2]
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 40, np.uint8)
    low = maps[..., :channels].min(axis=(0, 1))
    span = maps[..., :channels].max(axis=(0, 1)) - low
    scaled = (maps[..., :channels] - low) / np.where(span > 0, span, 1.0)
    tiles = np.rint(255 * scaled).astype(np.uint8)
    for k in range(channels):
        r, c = divmod(k, cols)
        mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[..., k]
    return mosaic
