"""Training-time data augmentation, done in the graph as one random affine warp per image.

Shift, rotation and zoom are composed into a single 3x3 transform per image and applied by
one `ImageProjectiveTransformV3` op (what Keras's RandomTranslation / RandomRotation /
RandomZoom layers each call), so the three cost one resampling pass, not three. Horizontal
flips (for clothing, not digits) fold into the same matrix. Elastic distortion (Simard et
al., 2003; used by many of the best published MNIST results, e.g. Ciresan et al., 2012) then
moves each pixel by a smooth random field. With it on, the field and the affine map are
composed into one map and the image is resampled once, by `sample_bilinear`: resampling
twice blurs every training image, and a model trained so failed on sharp test digits
(97% against 99.4% once they were blurred by a quarter pixel). Keras's own
`ops.image.elastic_transform` (3.15) resamples separately and draws its x and y fields from
one seed, so it only displaces pixels along the diagonal. Random erasing blanks a rectangle
last, with a mask.

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
    elastic: float = 0.0  # elastic distortion's scale alpha, pixels (Simard et al.: 34)
    elastic_sigma: float = 4.0  # smoothness of its displacement field, pixels (Simard: 4)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.zoom or self.hflip or self.erase
                    or self.elastic)


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


def gaussian_kernel(sigma: float) -> tf.Tensor:
    """A normalised 1-D Gaussian of standard deviation `sigma`, 2 * ceil(2 sigma) + 1 taps."""
    radius = max(1, math.ceil(2 * sigma))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / tf.reduce_sum(kernel)


def elastic_displacements(batch: tf.Tensor, height: int, width: int, alpha: float,
                          sigma: float, seed: tf.Tensor) -> tf.Tensor:
    """(batch, H, W, 2) displacements (dy, dx): uniform noise in [-1, 1] per pixel and axis,
    smoothed by a Gaussian of std `sigma` and scaled by `alpha` (Simard et al., 2003)."""
    noise = tf.random.stateless_uniform([batch, height, width, 2], minval=-1.0, maxval=1.0,
                                        seed=tf.random.experimental.stateless_fold_in(seed, 21))
    kernel = gaussian_kernel(sigma)
    taps = int(kernel.shape[0])
    # Separable blur, each of the two fields on its own (depthwise), zero beyond the edge.
    rows = tf.tile(tf.reshape(kernel, [taps, 1, 1, 1]), [1, 1, 2, 1])
    cols = tf.tile(tf.reshape(kernel, [1, taps, 1, 1]), [1, 1, 2, 1])
    smooth = tf.nn.depthwise_conv2d(noise, rows, [1, 1, 1, 1], "SAME")
    smooth = tf.nn.depthwise_conv2d(smooth, cols, [1, 1, 1, 1], "SAME")
    return alpha * smooth


def sample_bilinear(images: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Output pixel (b, i, j) = input image b at (y, x)[b, i, j], bilinear; 0 outside.

    `images` is (B, H, W, C); `y` and `x` are (B, H, W) positions in input pixels.
    """
    height, width = images.shape[1], images.shape[2]
    y, x = tf.cast(y, tf.float32), tf.cast(x, tf.float32)
    y0, x0 = tf.floor(y), tf.floor(x)
    wy = tf.cast(y - y0, images.dtype)[..., tf.newaxis]
    wx = tf.cast(x - x0, images.dtype)[..., tf.newaxis]
    # Pixels are gathered by flat index from (B*H*W, C), the index computed in float64 (exact):
    # gather_nd with batch_dims does integer arithmetic that oneDNN reports on every call.
    pixels = tf.reshape(images, [-1, images.shape[3]])
    first = tf.cast(tf.range(tf.shape(images)[0]), tf.float64)[:, tf.newaxis, tf.newaxis]
    first *= height * width

    def at(yi: tf.Tensor, xi: tf.Tensor) -> tf.Tensor:
        inside = (yi >= 0) & (yi <= height - 1) & (xi >= 0) & (xi <= width - 1)
        row = tf.cast(tf.clip_by_value(yi, 0, height - 1), tf.float64)
        col = tf.cast(tf.clip_by_value(xi, 0, width - 1), tf.float64)
        values = tf.gather(pixels, tf.cast(first + row * width + col, tf.int64))
        return values * tf.cast(inside, images.dtype)[..., tf.newaxis]

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def elastic_affine_positions(field: tf.Tensor, transforms: tf.Tensor | None
                             ) -> tuple[tf.Tensor, tf.Tensor]:
    """(y, x) input positions for each output pixel: the elastic displacement `field`
    (B, H, W, 2) first, then the affine `transforms` (B, 8; None: none), in one map."""
    height, width = field.shape[1], field.shape[2]
    grid_y, grid_x = tf.meshgrid(tf.range(height, dtype=tf.float32),
                                 tf.range(width, dtype=tf.float32), indexing="ij")
    y, x = grid_y + field[..., 0], grid_x + field[..., 1]
    if transforms is None:
        return y, x
    a0, a1, a2, b0, b1, b2 = (transforms[:, k, tf.newaxis, tf.newaxis] for k in range(6))
    return b0 * x + b1 * y + b2, a0 * x + a1 * y + a2


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
    batch = tf.shape(images)[0]
    transforms = (affine_transforms(batch, height, width, aug, seed)
                  if aug.shift or aug.rotate or aug.zoom or aug.hflip else None)
    if aug.elastic:
        field = elastic_displacements(batch, height, width, aug.elastic, aug.elastic_sigma, seed)
        images = sample_bilinear(images, *elastic_affine_positions(field, transforms))
    elif transforms is not None:
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
