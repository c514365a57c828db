"""Training-time data augmentation, done in the graph as one random affine warp per image.

Shift, rotation and zoom are composed into a single 3x3 transform per image and applied by
one `ImageProjectiveTransformV3` op (what Keras's RandomTranslation / RandomRotation /
RandomZoom layers each call), so the three cost one resampling pass, not three. Horizontal
flips (for clothing, not digits) fold into the same matrix. Random erasing blanks a
rectangle afterwards, with a mask (no resampling).

Randomness is stateless: the draws depend only on the `seed` tensor the training step
passes (the run's seed and the optimizer's step count), so a run is repeatable and a
resumed run augments exactly as an uninterrupted one. Labels are never touched: every
transform here is one a human would still label the same (small, centred, zero-filled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Augmentation:
    shift: float = 0.0    # largest shift, pixels, in each axis
    rotate: float = 0.0   # largest rotation, degrees, either way
    zoom: float = 0.0     # largest relative zoom in or out (0.1: 90% to 110%)
    hflip: bool = False   # mirror left-right with probability 1/2
    erase: float = 0.0    # probability of blanking one random rectangle (random erasing)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.zoom or self.hflip or self.erase)


def _uniform(batch: tf.Tensor, seed: tf.Tensor, stream: int, limit: float) -> tf.Tensor:
    # One independent stream per parameter, all derived from the step's seed.
    stream_seed = tf.random.experimental.stateless_fold_in(seed, stream)
    return tf.random.stateless_uniform([batch], seed=stream_seed, minval=-limit, maxval=limit)


def affine_transforms(batch: tf.Tensor, height: int, width: int, aug: Augmentation,
                      seed: tf.Tensor) -> tf.Tensor:
    """(batch, 8) projective transforms mapping output pixels to input pixels.

    Rotation and zoom are about the image centre; the flip mirrors about it too.
    """
    angle = _uniform(batch, seed, 1, aug.rotate * math.pi / 180)
    scale = 1.0 + _uniform(batch, seed, 2, aug.zoom)
    dx = _uniform(batch, seed, 3, aug.shift)
    dy = _uniform(batch, seed, 4, aug.shift)
    if aug.hflip:
        coin = tf.random.stateless_uniform([batch], seed=tf.random.experimental
                                           .stateless_fold_in(seed, 5))
        mirror = tf.where(coin < 0.5, -1.0, 1.0)
    else:
        mirror = tf.ones([batch])
    # Inverse map: input = R(-angle) / scale applied to (output - centre - shift) + centre.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1 = cos * mirror, sin
    b0, b1 = -sin * mirror, cos
    a2 = cx - a0 * (cx + dx) - a1 * (cy + dy)
    b2 = cy - b0 * (cx + dx) - b1 * (cy + dy)
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def erase_rectangles(images: tf.Tensor, probability: float, seed: tf.Tensor) -> tf.Tensor:
    """Random erasing (Zhong et al., 2017): with `probability`, one rectangle of each image,
    2-25% of its area with an aspect ratio from 1/3 to 3, is set to 0 (the background).

    The model must then recognise items from their remaining parts, which regularises it.
    """
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]

    def draw(stream: int, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
        return tf.random.stateless_uniform(
            [batch], seed=tf.random.experimental.stateless_fold_in(seed, stream),
            minval=low, maxval=high)

    area = draw(11, 0.02, 0.25) * height * width
    aspect = tf.exp(draw(12, math.log(1 / 3), math.log(3)))
    h = tf.minimum(tf.sqrt(area * aspect), float(height))
    w = tf.minimum(tf.sqrt(area / aspect), float(width))
    top = draw(13) * (height - h)
    left = draw(14) * (width - w)
    applied = draw(15) < probability
    rows = tf.range(height, dtype=tf.float32)[tf.newaxis, :, tf.newaxis]
    cols = tf.range(width, dtype=tf.float32)[tf.newaxis, tf.newaxis, :]

    def column(v: tf.Tensor) -> tf.Tensor:
        return v[:, tf.newaxis, tf.newaxis]

    inside = ((rows >= column(top)) & (rows < column(top + h))
              & (cols >= column(left)) & (cols < column(left + w)) & column(applied))
    return images * tf.cast(~inside, images.dtype)[..., tf.newaxis]


def augment_images(images: tf.Tensor, aug: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Randomly warped copies of a float batch (B, H, W, C); `seed` is a shape-[2] int tensor.

    Pixels that come from outside the image are 0 (background, after scaling to [0, 1]).
    """
    if not aug.active:
        return images
    height, width = images.shape[1], images.shape[2]
    if aug.shift or aug.rotate or aug.zoom or aug.hflip:
        transforms = affine_transforms(tf.shape(images)[0], height, width, aug, seed)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.constant([height, width]),
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    if aug.erase:
        images = erase_rectangles(images, aug.erase, seed)
    return images


def step_seed(run_seed: int, step: tf.Tensor, replica: tf.Tensor | int = 0) -> tf.Tensor:
    """The seed for one training step's augmentation: (run seed, step) folded with the replica."""
    base = tf.stack([tf.constant(run_seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(replica, tf.int64))
