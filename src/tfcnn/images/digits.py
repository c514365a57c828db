"""MNIST-style digits: a user's picture of a digit made to look as MNIST's digits do.

Digit models get the preprocessing MNIST itself was made with (LeCun et al.): white ink on
black, the digit's bounding box scaled to fit 20×20 keeping its aspect ratio, pasted into
28×28 with its centre of mass at the centre. A plain resize of a photo or a drawing of a
digit (dark ink on a wide light page) looks nothing like that and is mostly misread.
`mnist_style` does it; `ink_map` finds the ink whatever the page's polarity and lighting.
Pillow and numpy only: no TensorFlow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from tfcnn.images.decode import flatten

MNIST_SIZE = 28  # the canvas, pixels
MNIST_BOX = 20  # the longer side of the digit's bounding box, pixels
# Photos are shrunk to this longest side first: plenty for a 20 px digit, and it keeps the
# numpy work small for 12-megapixel phone pictures.
WORK_SIDE = 1024
# An image whose ink differs from its background by less than this (of the 0-1 range), or
# by less than 6 sigma of its noise, is treated as blank rather than stretching its noise
# into a "digit".
MIN_CONTRAST = 0.08


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / np.float32(255.0)


def _border(values: np.ndarray) -> np.ndarray:
    ring = max(1, min(values.shape) // 20)
    return np.concatenate([values[:ring].ravel(), values[-ring:].ravel(),
                           values[ring:-ring, :ring].ravel(), values[ring:-ring, -ring:].ravel()])


def _otsu(values: np.ndarray) -> float:
    """The threshold splitting `values` (in [0, 1]) into two classes of least variance."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts).astype(np.float64)
    mass = np.cumsum(counts * centres)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight
        mean_high = (total_mass - mass) / (total - weight)
        between = weight * (total - weight) * (mean_low - mean_high) ** 2
    return float(edges[int(np.nanargmax(between)) + 1])


def _background(values: np.ndarray) -> tuple[np.ndarray, float]:
    """The page under the ink (ink bright) as a smooth surface, and the noise about it.

    Uneven light on a photographed page is a slow gradient that a single level cannot
    remove, so a quadratic surface is fitted to the background pixels (on a small copy),
    dropping pixels far above the fit (the ink) and refitting. Returns the surface at full
    size and the noise's robust sigma (MAD of the background's residuals).
    """
    small = Image.fromarray(values)
    if max(small.size) > 64:
        small.thumbnail((64, 64), Image.Resampling.BOX)
    sample = np.asarray(small, dtype=np.float64)

    def terms(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        return np.linspace(-1, 1, rows)[:, None], np.linspace(-1, 1, cols)[None, :]

    y, x = terms(*sample.shape)
    ones = np.ones_like(sample)
    design = np.stack([ones, x * ones, y * ones, x * x * ones, y * y * ones, x * y], -1)
    design, target = design.reshape(-1, 6), sample.ravel()
    # Start from the darker half (the ink is the minority), then let the fit choose.
    keep = target <= np.median(target)
    for _ in range(4):
        coef = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        keep = _below_ink(target - design @ coef)[0]
    y, x = terms(*values.shape)
    surface = (coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * x + coef[4] * y * y
               + coef[5] * x * y).astype(np.float32)
    # The noise is measured at full size: the small copy's averaging hides most of it.
    return surface, _below_ink(values - surface)[1]


def _below_ink(residual: np.ndarray) -> tuple[np.ndarray, float]:
    """Which residuals are background (not far above the bulk), and their robust sigma."""
    centre = float(np.median(residual))
    sigma = 1.4826 * float(np.median(np.abs(residual - centre)))
    keep = residual <= centre + 2.5 * sigma
    background = residual[keep]
    return keep, 1.4826 * float(np.median(np.abs(background - np.median(background))))


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink, 0 = background), whatever the image's polarity.

    The ink is on whichever side of the page's level (the median of the border) the image
    reaches further, so dark ink on a light page is inverted, as MNIST is white on black.
    The background (`_background`) is subtracted, noise near it cut, and the ink stretched
    so that its strokes reach 1.
    """
    grey = flatten(image, "L")
    if max(grey.size) > WORK_SIDE:
        grey = grey.copy()
        grey.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    # Smooth away sensor and paper noise finer than any detail that survives the shrink to
    # 20 px (a digit is a good part of the image): its speckles would otherwise pass for ink.
    radius = min(grey.size) / 200
    if radius >= 0.5:
        grey = grey.filter(ImageFilter.GaussianBlur(radius))
    values = _to_array(grey)
    page = float(np.median(_border(values)))
    low, high = np.percentile(values, [0.5, 99.5])
    if page - low > high - page:  # ink darker than the page: invert
        values = 1.0 - values
    surface, noise = _background(values)
    ink = np.clip(values - surface, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        return np.zeros_like(ink)
    threshold = _otsu(ink / peak) * peak
    strokes = ink[ink > threshold]
    level = float(np.percentile(strokes, 90)) if strokes.size else peak
    # Cut the noise, but never more than half the way to the ink threshold, so that
    # anti-aliased stroke edges survive.
    cut = min(3.0 * noise, 0.5 * threshold)
    if level - cut < MIN_CONTRAST or level < 6.0 * noise:  # nothing stands out of the noise
        return np.zeros_like(ink)
    return np.clip((ink - cut) / (level - cut), 0.0, 1.0).astype(np.float32)


def _ink_bounds(ink: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last index along an axis holding clear ink (over 15% of the strokes' level),
    ignoring the outer 0.2% of it on each side: faint noise or a speck of dust far
    from the digit must not set its size."""
    profile = (ink > 0.15).sum(axis=1 - axis)
    cumulative = np.cumsum(profile) / profile.sum()
    first = int(np.searchsorted(cumulative, 0.002, side="right"))
    last = int(np.searchsorted(cumulative, 0.998, side="left"))
    return first, max(first, last)


def mnist_style(image: Image.Image) -> np.ndarray:
    """28×28 float32 in [0, 1], made as MNIST was: white ink on black, the ink's bounding box
    scaled to fit 20×20 (aspect ratio kept), its centre of mass at the canvas's centre.

    A blank image (no ink against its background) gives an all-zero canvas.
    """
    ink = ink_map(image)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    if not ink.any():
        return canvas
    top, bottom = _ink_bounds(ink, 0)
    left, right = _ink_bounds(ink, 1)
    crop = ink[top:bottom + 1, left:right + 1]
    height, width = crop.shape
    scale = MNIST_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Lanczos on float data: antialiased when shrinking, sharp when enlarging a small drawing.
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized), 0.0, 1.0)
    if digit.max() <= 0:
        return canvas
    # Strokes thinned to under a pixel by the shrink come out grey; MNIST's reach full white.
    digit = digit / digit.max()
    rows, cols = np.indices(digit.shape)
    mass = digit.sum()
    centre_row, centre_col = (rows * digit).sum() / mass, (cols * digit).sum() / mass
    # MNIST's centres of mass sit at (14.0, 14.0) in pixel indices (measured: mean 14.00,
    # sd 0.29), half a pixel below and right of the canvas's geometric centre (13.5).
    middle = MNIST_SIZE / 2
    _paste(canvas, digit, round(middle - centre_row), round(middle - centre_col))
    return canvas


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Copy `patch` into `canvas` at (top, left), clipping whatever falls outside."""
    height, width = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = patch[y0 - top:y1 - top, x0 - left:x1 - left]
