"""Decoded images to model inputs: the exact pixels training stores and prediction feeds.

One chain serves training and prediction alike, so a model sees the same pixels for a file
whether it was trained on it (`tfcnn.data.folders`) or is asked about it (predict, the API,
the server):

    file ─ load_image(min_size=(H, W)) ─ to_pixels ─ uint8 H×W×C      (training stores this)
                                                    └ / 255 ─ float32 (prediction feeds this)

- `to_pixels`: transparency on white, 16-bit greys scaled, "L" or "RGB" per the channels,
  then a plain resize to exactly H×W with Pillow's BILINEAR filter (antialiased when
  shrinking; the aspect ratio is not kept).
- `decode_for_model(path, H, W, C)`: a file to those uint8 pixels, with a JPEG decoded at
  1/2..1/8 scale when that still leaves at least max(H, W) per side (see benchmarks in
  docs/benchmarks.md). Usable from `tf.numpy_function` for streaming folders from disk.
- `model_input(source, prepare, image_shape)`: a file or bytes to the float32 input;
  without a preparation step exactly `to_unit(decode_for_model(...))`.
- `prepare(image, ...)`: an already decoded Pillow image to the float32 input (digit models,
  `prepare="mnist"`, get `tfcnn.images.digits.mnist_style`); `resize_only` =
  `to_unit(to_pixels(...))`.
- `to_unit`: pixels / `PIXEL_MAX`, the numpy twin of the model's own scaling
  (`tfcnn.images.preprocessor.scale_pixels`): the same float32 division.
- `image_from_array`: a user's numpy array (H×W, H×W×1/3/4; uint8 0-255 or float 0-1) as a
  Pillow image, checked.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.images.decode import ImageError, Source, flatten, load_image
from tfcnn.images.digits import mnist_style

# Steps a model may name for the host to run before its own preprocessing (its config's
# `prepare`): "mnist", a user's digit made MNIST-style (`tfcnn.images.digits`).
PREPARE_STEPS = ("mnist",)
PIXEL_MAX = 255.0  # uint8 pixels / this = the [0, 1] values every network was trained on
RESAMPLE = Image.Resampling.BILINEAR
_SCALE = np.float32(PIXEL_MAX)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1] (pixels / `PIXEL_MAX`, float32 division)."""
    return np.asarray(pixels).astype(np.float32) / _SCALE


def _check_size(image: Image.Image) -> None:
    if 0 in image.size:
        raise ValueError(f"it has no pixels ({image.size[0]}×{image.size[1]})")


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}")


def to_pixels(image: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """uint8 H×W×C: alpha on white, grey (C=1) or RGB (C=3), resized to exactly H×W."""
    _check_channels(channels)
    _check_size(image)
    image = flatten(image, "L" if channels == 1 else "RGB")
    if image.size != (width, height):
        # Bilinear with Pillow's antialiasing: a shrink averages rather than skipping pixels.
        image = image.resize((width, height), RESAMPLE)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., np.newaxis] if channels == 1 else pixels


def resize_only(image: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """H×W×C float32 in [0, 1]: exactly `to_pixels(...)` / 255."""
    return to_unit(to_pixels(image, height, width, channels))


def decode_for_model(source: Source, height: int, width: int, channels: int,
                     name: str | None = None) -> np.ndarray:
    """A file's uint8 H×W×C pixels as a folder-trained model sees them (see module doc).

    Raises `ImageError` (`ImageTooLarge` included) naming the file for anything unusable.
    """
    _check_channels(channels)
    image = load_image(source, name, min_size=(height, width))
    return _converted(lambda: to_pixels(image, height, width, channels), source, name)


def model_input(source: Source, step: str | None, image_shape: tuple[int, int, int],
                preprocess: bool = True, name: str | None = None) -> np.ndarray:
    """A file's (or a binary file object's) H×W×C float32 model input in [0, 1].

    `step` is the model's host-side preparation (`PREPARE_STEPS`, or None); a model
    without one, or any model with `preprocess=False`, gets
    `to_unit(decode_for_model(...))` bit for bit. Raises `ImageError`.
    """
    _check_step(step)
    height, width, channels = image_shape
    if not preprocess or step is None:
        return to_unit(decode_for_model(source, height, width, channels, name))
    image = load_image(source, name)
    return _converted(lambda: prepare(image, step, image_shape), source, name)


def _converted(convert: Any, source: object, name: str | None) -> np.ndarray:
    try:
        return convert()
    except (OSError, ValueError) as exc:  # e.g. a mode Pillow cannot convert
        label = name or (os.fsdecode(source) if isinstance(source, str | bytes | os.PathLike)
                         else "image")
        raise ImageError(f"{label}: cannot convert image ({exc})") from exc


def _check_step(step: str | None) -> None:
    if step is not None and step not in PREPARE_STEPS:
        raise ValueError(f"prepare: expected None or one of {PREPARE_STEPS}, got {step!r}")


def prepare(image: Image.Image, step: str | None, image_shape: tuple[int, int, int],
            preprocess: bool = True) -> np.ndarray:
    """The model's H×W×C float32 input in [0, 1] for one decoded image.

    `step` is the model's host-side preparation: "mnist" (digits: `mnist_style`) or None
    (`resize_only`, as folder and Fashion-MNIST models were trained). With
    `preprocess=False` every model gets `resize_only`. For a file, `model_input` is the same
    with the folder loader's JPEG scaling, so it matches training bit for bit.
    """
    _check_step(step)
    height, width, channels = image_shape
    if not preprocess or step is None:
        return resize_only(image, height, width, channels)
    _check_size(image)
    digit = mnist_style(image)
    if digit.shape != (height, width):
        digit = np.asarray(Image.fromarray(digit).resize((width, height), RESAMPLE))
    return np.repeat(digit[..., np.newaxis], channels, axis=-1).astype(np.float32)


_ARRAY_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_EXPECTED = "H×W, H×W×1, H×W×2 (grey and alpha), H×W×3 or H×W×4"


def image_from_array(array: Any, name: str = "array") -> Image.Image:
    """A numpy image as a Pillow image: H×W or H×W×1 (grey), H×W×2 (grey and alpha), H×W×3
    (RGB), H×W×4 (RGBA).

    uint8 arrays are pixels 0-255; float arrays are 0-1, rounded to the nearest of the 256
    levels (so `pixels / 255` comes back as exactly `pixels`). Raises `ImageError` naming
    `name` for another shape or dtype, an empty array, or floats outside [0, 1] or NaN.
    """
    values = np.asarray(array)
    shape = "×".join(str(n) for n in values.shape) or "a scalar"
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"{name}: expected an image array of shape {_EXPECTED}, got {shape}")
    if values.size == 0:
        raise ImageError(f"{name}: empty image array (shape {shape})")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: NaN or infinite values (expected floats in [0, 1])")
        if values.min() < 0 or values.max() > 1:
            raise ImageError(f"{name}: float values outside [0, 1] (got {values.min():g} to "
                             f"{values.max():g}; scale 0-255 pixels by 1/255, or pass uint8)")
        values = np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    elif values.dtype != np.uint8:
        raise ImageError(f"{name}: expected uint8 pixels (0-255) or floats (0-1), "
                         f"got dtype {values.dtype}")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    mode = "L" if values.ndim == 2 else _ARRAY_MODES[values.shape[2]]
    image = Image.fromarray(np.ascontiguousarray(values))
    assert image.mode == mode, (image.mode, mode)
    return image
