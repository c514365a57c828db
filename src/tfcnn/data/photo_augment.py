"""Training-time augmentation for colour photos, in the graph: crop, flip, colour, mixing.

`photo_augment` gives each image of a float batch (B, H, W, C) in [0, 1]:
- a random resized crop (Szegedy et al., 2015; the ImageNet recipe): a box of a random
  share of the area and aspect ratio, resized back to H x W, with the horizontal flip folded
  into the same box (`tf.image.crop_and_resize` mirrors a box whose x1 > x2), so crop and flip
  cost one bilinear resampling pass;
- colour jitter with a factor per image (torchvision's ColorJitter, vectorised: TF's
  `stateless_random_*` image ops draw one factor per batch): brightness (added), contrast
  (scaled about each image's channel means), saturation (blended with the grey image) and
  hue (a rotation about the grey axis in YIQ space). Grey images (C = 1) get brightness and
  contrast only. Values are clipped to [0, 1].

`mix_batch` optionally blends pairs of images, mixup (Zhang et al., 2018) or cutmix (Yun et
al., 2019); it changes labels, so it returns the partner labels and the weight of each
image's own label for the loss: `w * CE(labels) + (1 - w) * CE(partner_labels)`.

Randomness is stateless, as in data/augment.py: every draw depends only on the `seed`
tensor (shape [2]; `augment.step_seed(run_seed, step, replica)`), so a resumed run augments
exactly as an uninterrupted one. Streams 101 and up keep clear of augment.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class PhotoAugmentation:
    crop_area: float = 0.0    # smallest share of the area a random crop keeps (0: no crop)
    crop_aspect: float = 4 / 3  # aspect ratios of the crop box from 1/this to this
    hflip: bool = False       # mirror left-right with probability 1/2
    brightness: float = 0.0   # largest brightness change, added (0.2: +-0.2)
    contrast: float = 0.0     # contrast factor from 1 - this to 1 + this
    saturation: float = 0.0   # saturation factor from 1 - this to 1 + this
    hue: float = 0.0          # largest hue rotation, in turns (0.5: half the colour circle)
    mixup: float = 0.0        # mixup's Beta(a, a) parameter a (0: off)
    cutmix: float = 0.0       # cutmix's Beta(a, a) parameter a (0: off); with both, a coin

    @property
    def active(self) -> bool:
        return bool(self.crop_area or self.hflip or self.brightness or self.contrast
                    or self.saturation or self.hue)

    @property
    def mixing(self) -> bool:
        return bool(self.mixup or self.cutmix)


def _draw(batch: tf.Tensor, seed: tf.Tensor, stream: int, low: float = 0.0,
          high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform(
        [batch], seed=tf.random.experimental.stateless_fold_in(seed, stream),
        minval=low, maxval=high)


def crop_boxes(batch: tf.Tensor, config: PhotoAugmentation, seed: tf.Tensor) -> tf.Tensor:
    """(B, 4) boxes (y1, x1, y2, x2) in 0-1 image coordinates; flipped ones have x1 > x2."""
    if config.crop_area:
        area = _draw(batch, seed, 101, config.crop_area, 1.0)
        log_aspect = math.log(config.crop_aspect)
        aspect = tf.exp(_draw(batch, seed, 102, -log_aspect, log_aspect))  # width / height
        width = tf.minimum(tf.sqrt(area * aspect), 1.0)
        height = tf.minimum(tf.sqrt(area / aspect), 1.0)
        top = _draw(batch, seed, 103) * (1.0 - height)
        left = _draw(batch, seed, 104) * (1.0 - width)
    else:
        height = width = tf.ones([batch])
        top = left = tf.zeros([batch])
    x1, x2 = left, left + width
    if config.hflip:
        flip = _draw(batch, seed, 105) < 0.5
        x1, x2 = tf.where(flip, x2, x1), tf.where(flip, x1, x2)
    return tf.stack([top, x1, top + height, x2], axis=1)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    return values[:, tf.newaxis, tf.newaxis, tf.newaxis]


# RGB <-> YIQ (NTSC): Y is the grey level; a hue change rotates the (I, Q) plane.
_TO_YIQ = tf.constant([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523],
                       [0.114, -0.322, 0.312]])
_FROM_YIQ = tf.linalg.inv(_TO_YIQ)


def _rotate_hue(images: tf.Tensor, turns: tf.Tensor) -> tf.Tensor:
    angle = 2 * math.pi * turns
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    rotation = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, cos, sin], -1),
                         tf.stack([zero, -sin, cos], -1)], 1)  # (B, 3, 3), acting on rows
    matrix = tf.matmul(tf.matmul(_TO_YIQ[tf.newaxis], rotation), _FROM_YIQ[tf.newaxis])
    return tf.einsum("bhwc,bcd->bhwd", images, matrix)


def jitter_colours(images: tf.Tensor, config: PhotoAugmentation, seed: tf.Tensor) -> tf.Tensor:
    """Brightness, contrast, saturation and hue, each with its own factor per image."""
    batch, colour = tf.shape(images)[0], images.shape[-1] == 3
    if config.brightness:
        images = images + _per_image(_draw(batch, seed, 111, -config.brightness,
                                           config.brightness))
    if config.contrast:
        factor = _per_image(_draw(batch, seed, 112, 1 - config.contrast, 1 + config.contrast))
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        images = (images - mean) * factor + mean
    if config.saturation and colour:
        factor = _per_image(_draw(batch, seed, 113, 1 - config.saturation,
                                  1 + config.saturation))
        grey = tf.reduce_sum(images * _TO_YIQ[:, 0], axis=-1, keepdims=True)
        images = grey + (images - grey) * factor
    if config.hue and colour:
        images = _rotate_hue(images, _draw(batch, seed, 114, -config.hue, config.hue))
    return tf.clip_by_value(images, 0.0, 1.0)


def photo_augment(images: tf.Tensor, seed: tf.Tensor, config: PhotoAugmentation) -> tf.Tensor:
    """Randomly cropped, flipped and colour-jittered copies of a float batch (B, H, W, C) in
    [0, 1]; `seed` is a shape-[2] integer tensor. Shape and dtype are kept."""
    if not config.active:
        return images
    dtype, height, width = images.dtype, images.shape[1], images.shape[2]
    out = tf.cast(images, tf.float32)
    batch = tf.shape(out)[0]
    if config.crop_area or config.hflip:
        out = tf.image.crop_and_resize(out, crop_boxes(batch, config, seed),
                                       tf.range(batch), [height, width])
    if config.brightness or config.contrast or config.saturation or config.hue:
        out = jitter_colours(out, config, seed)
    return tf.cast(out, dtype)


def _beta(batch: tf.Tensor, alpha: float, seed: tf.Tensor, stream: int) -> tf.Tensor:
    """Beta(alpha, alpha) draws, as X / (X + Y) of two Gamma(alpha) draws."""
    x = tf.random.stateless_gamma([batch], tf.random.experimental.stateless_fold_in(seed, stream),
                                  alpha=alpha)
    y = tf.random.stateless_gamma([batch],
                                  tf.random.experimental.stateless_fold_in(seed, stream + 1),
                                  alpha=alpha)
    return x / tf.maximum(x + y, 1e-12)


def _cut_mask(shape: tf.Tensor, share: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """(B, H, W, 1) masks, 1 inside a box of about `share` of the image, centred at random
    (clipped at the edges, as in the cutmix paper)."""
    batch, height, width = shape[0], shape[1], shape[2]
    side = tf.sqrt(share)
    cy, cx = _draw(batch, seed, 125), _draw(batch, seed, 126)
    rows = (tf.cast(tf.range(height), tf.float32) + 0.5) / tf.cast(height, tf.float32)
    cols = (tf.cast(tf.range(width), tf.float32) + 0.5) / tf.cast(width, tf.float32)
    inside_rows = tf.abs(rows[tf.newaxis] - cy[:, tf.newaxis]) < side[:, tf.newaxis] / 2
    inside_cols = tf.abs(cols[tf.newaxis] - cx[:, tf.newaxis]) < side[:, tf.newaxis] / 2
    inside = inside_rows[:, :, tf.newaxis] & inside_cols[:, tf.newaxis, :]
    return tf.cast(inside, tf.float32)[..., tf.newaxis]


def mix_batch(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, config: PhotoAugmentation
              ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(mixed images, partner labels, weight of each image's own label), shape (B, H, W, C),
    (B,), (B,). Each image is paired with another of the batch (a random permutation);
    with both mixup and cutmix on, a coin per image picks one. Without either: unchanged
    images, the labels themselves and weights of 1."""
    batch = tf.shape(images)[0]
    if not config.mixing:
        return images, labels, tf.ones([batch])
    order = tf.argsort(_draw(batch, seed, 121))
    x = tf.cast(images, tf.float32)
    partner = tf.gather(x, order)
    mixed, weight = x, tf.ones([batch])
    if config.mixup:
        weight = _beta(batch, config.mixup, seed, 122)
        mixed = _per_image(weight) * x + _per_image(1 - weight) * partner
    if config.cutmix:
        mask = _cut_mask(tf.shape(x), 1 - _beta(batch, config.cutmix, seed, 127), seed)
        cut = mask * partner + (1 - mask) * x
        cut_weight = 1 - tf.reduce_mean(mask, axis=[1, 2, 3])  # the share actually kept
        if config.mixup:
            use_cut = _draw(batch, seed, 129) < 0.5
            mixed = tf.where(_per_image(use_cut), cut, mixed)
            weight = tf.where(use_cut, cut_weight, weight)
        else:
            mixed, weight = cut, cut_weight
    return tf.cast(mixed, images.dtype), tf.gather(labels, order), weight
