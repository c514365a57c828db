"""Test-time augmentation (TTA) and ensemble averaging of class probabilities (numpy only).

TTA runs a model on a few label-preserving variants of each image (here: copies shifted by a
pixel) and averages its class probabilities; an ensemble averages the probabilities of
several models. Both cancel part of the errors that one view or one model makes.
`tfcnn evaluate --tta`, `tfcnn predict --tta`, `tfcnn evaluate RUN_DIR RUN_DIR ...` and
`tfcnn train --ensemble N` build on these pure functions; the caller supplies the model as a
`predict_fn`, so this module never imports TensorFlow and its tests run in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tfcnn.core.errors import ModelSpecError

Shift = tuple[int, int]  # (dy, dx) in pixels: positive dy moves the content down, dx right

# MNIST's digits were placed in 28x28 by their centre of mass, not by a fixed box, so where a
# stroke lies varies by a pixel or more from one digit to the next: moving a digit by one
# pixel keeps its label (and, with the 20x20 digit in a 28x28 canvas, all of its ink)
# while giving the model a slightly different view. The original and its four 1-pixel
# neighbours are the smallest symmetric set; larger shifts start to push ink off the canvas.
DEFAULT_SHIFTS: tuple[Shift, ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def _check_images(images: np.ndarray) -> None:
    if images.ndim not in (3, 4):
        raise ValueError(f"images: expected a batch of shape (N, H, W) or (N, H, W, C), "
                         f"got shape {images.shape}")


def shift_images(images: Any, dy: int, dx: int) -> np.ndarray:
    """A copy of the batch `images` (N, H, W[, C]) moved by (dy, dx) pixels.

    Pixels moved in from outside are 0 (black: the background of MNIST-style images);
    nothing wraps around. A shift by the image's size or more gives an all-zero copy.
    """
    images = np.asarray(images)
    _check_images(images)
    dy, dx = int(dy), int(dx)
    out = np.zeros_like(images)
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        return out
    # Rows [max(dy, 0), height + min(dy, 0)) of the copy come from the rows dy above them.
    out[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def shifted_copies(images: Any, shifts: Sequence[Shift] = DEFAULT_SHIFTS) -> list[np.ndarray]:
    """One shifted copy of the batch per (dy, dx) in `shifts`, in order (see `shift_images`)."""
    if not len(shifts):
        raise ValueError("shifts: expected at least one (dy, dx) pair")
    return [shift_images(images, dy, dx) for dy, dx in shifts]


def average_probabilities(prob_arrays: Sequence[Any]) -> np.ndarray:
    """The element-wise mean (float64) of equally shaped probability arrays.

    The ensemble's prediction: each array holds one model's (or one view's) class
    probabilities for the same images, (N, classes). Arrays of other shapes cannot belong
    to the same images and classes: a `ModelSpecError` says which one differs.
    """
    arrays = [np.asarray(p, dtype=np.float64) for p in prob_arrays]
    if not arrays:
        raise ModelSpecError("nothing to average: an ensemble needs at least one model")
    first = arrays[0].shape
    for index, array in enumerate(arrays[1:], start=2):
        if array.shape != first:
            raise ModelSpecError(f"cannot average class probabilities of shape {array.shape} "
                                 f"(number {index}) with those of shape {first} (number 1): "
                                 "every model must score the same images and classes")
    # A running sum, not np.stack: memory stays at two arrays, however many are averaged.
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total / len(arrays)


def mirror_images(images: Any) -> np.ndarray:
    """The batch mirrored left to right (for models trained with --hflip)."""
    images = np.asarray(images)
    _check_images(images)
    return images[:, :, ::-1].copy()


def tta_probabilities(predict_fn: Callable[[np.ndarray], Any], images: Any,
                      shifts: Sequence[Shift] = DEFAULT_SHIFTS,
                      mirror: bool = False) -> np.ndarray:
    """The class probabilities of `images` averaged over their shifted copies (float64).

    With `mirror`, each shifted copy is also seen mirrored (2 x len(shifts) views): only for
    models trained with mirroring, to which left and right are the same class.
    `predict_fn` maps a batch like `images` to its (N, classes) probabilities. The copies
    are made one at a time, so memory holds one copy of the batch, not len(shifts).
    """
    images = np.asarray(images)
    _check_images(images)
    if not len(shifts):
        raise ValueError("shifts: expected at least one (dy, dx) pair")
    views = [images, mirror_images(images)] if mirror else [images]
    return average_probabilities([predict_fn(shift_images(view, dy, dx))
                                  for view in views for dy, dx in shifts])
