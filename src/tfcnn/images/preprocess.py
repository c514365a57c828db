"""Turning a user's image into a model's input: decoding files safely, and MNIST-style digits.

`load_image` decodes one file (PNG, JPEG, BMP, GIF, WebP) into a Pillow image, raising
`ImageError` with a one-line message naming the file for anything it cannot use.
`prepare` turns a Pillow image into the H×W×C float32 array in [0, 1] a model expects; it
knows nothing of files, so the HTTP server can use it on uploaded bytes too.

Digit models get the preprocessing MNIST itself was made with (LeCun et al.): white ink on
black, the digit's bounding box scaled to fit 20×20 keeping its aspect ratio, pasted into
28×28 with its centre of mass at the centre. A plain resize of a photo or a drawing of a
digit (dark ink on a wide light page) looks nothing like that and is mostly misread.
Other models get a plain resize, as they were trained. Pillow and numpy only: no TensorFlow.
"""

from __future__ import annotations

import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from tfcnn.core.errors import TfcnnError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
FORMATS_TEXT = "PNG, JPEG, BMP, GIF or WebP"
PREPROCESSINGS = ("mnist", "scale")

MNIST_SIZE = 28  # the canvas, pixels
MNIST_BOX = 20  # the longer side of the digit's bounding box, pixels
# Photos are shrunk to this longest side first: plenty for a 20 px digit, and it keeps the
# numpy work small for 12-megapixel phone pictures.
WORK_SIDE = 1024
# An image whose ink differs from its background by less than this (of the 0-1 range), or
# by less than 6 sigma of its noise, is treated as blank rather than stretching its noise
# into a "digit".
MIN_CONTRAST = 0.08


class ImageError(TfcnnError):
    """An image file that cannot be decoded: not an image, truncated, empty or too large."""


class ImageTooLarge(ImageError):
    """An image whose decoded pixels would exceed the memory allowed for one image
    (the server answers 413 for it)."""


def load_image(source: str | os.PathLike[str] | BinaryIO, name: str | None = None
               ) -> Image.Image:
    """Decode a PNG, JPEG, BMP, GIF or WebP image fully (first frame), upright per its EXIF.

    `source` is a path or a binary file object; `name` is what error messages call it
    (default: the path). Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) holds:
    an image over it is an `ImageError`, not a warning.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "image")
    if isinstance(source, str | os.PathLike):
        try:
            if os.path.getsize(source) == 0:
                raise ImageError(f"{label}: empty file (0 bytes)")
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    try:
        # Pillow only warns between 1x and 2x the limit; we refuse both. The explicit size
        # check below holds even if another thread changes the warning filters meanwhile.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as opened:
                _check_pixels(opened, label)
                opened.load()
                return ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not a {FORMATS_TEXT} image") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{label}: is a folder, not an image file") from exc
    except OSError as exc:
        # Pillow reports truncated or corrupt data as OSError ("image file is truncated").
        if exc.strerror:
            raise ImageError(f"{label}: cannot read ({exc.strerror})") from exc
        raise ImageError(f"{label}: truncated or corrupt image ({exc})") from exc
    except (ValueError, SyntaxError, EOFError, IndexError) as exc:
        # Some decoders report malformed headers or data with these.
        raise ImageError(f"{label}: corrupt image ({exc})") from exc


def _check_pixels(image: Image.Image, label: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit and width * height > limit:
        raise ImageError(f"{label}: image too large ({width}x{height} = {width * height:,} "
                         f"pixels; the limit is {limit:,})")


def flatten(image: Image.Image, mode: str) -> Image.Image:
    """`image` in mode "L" or "RGB", any transparency composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit greys: Pillow's convert("L") would clip rather than scale them.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(grey)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image if image.mode == mode else image.convert(mode)


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / np.float32(255.0)


def resize_only(image: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """H×W×C float32 in [0, 1]: alpha on white, grey or RGB per `channels`, a plain resize."""
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}")
    image = flatten(image, "L" if channels == 1 else "RGB")
    if image.size != (width, height):
        # Bilinear with Pillow's antialiasing: a shrink averages rather than skipping pixels.
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = _to_array(image)
    return array[..., np.newaxis] if channels == 1 else array


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


def prepare(image: Image.Image, model_preprocessing: str, image_shape: tuple[int, int, int],
            preprocess: bool = True) -> np.ndarray:
    """The model's H×W×C float32 input in [0, 1] for one image.

    `model_preprocessing` is the model's own setting: "mnist" (digits: `mnist_style`) or
    "scale" (`resize_only`, as folder and Fashion-MNIST models were trained). With
    `preprocess=False` every model gets `resize_only`.
    """
    if model_preprocessing not in PREPROCESSINGS:
        raise ValueError(f"preprocessing: expected one of {PREPROCESSINGS}, "
                         f"got {model_preprocessing!r}")
    height, width, channels = image_shape
    if not preprocess or model_preprocessing == "scale":
        return resize_only(image, height, width, channels)
    digit = mnist_style(image)
    if digit.shape != (height, width):
        digit = np.asarray(Image.fromarray(digit).resize(
            (width, height), Image.Resampling.BILINEAR))
    return np.repeat(digit[..., np.newaxis], channels, axis=-1).astype(np.float32)
