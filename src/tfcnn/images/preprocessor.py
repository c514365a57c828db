"""`Preprocessor`: the model's own preprocessing, a Keras layer saved inside `model.keras`.

A trained model carries what turns a user's images into its network's input, the way a
keras-hub task carries its preprocessor: a layer with a `get_config`, serialised with the
model, so an exported or served model needs no preprocessing code in its client.

    images (uint8 0-255 or float 0-1; N×H'×W'×C', any size; C' = 1, 2, 3 or 4)
      │ alpha   grey+alpha or RGBA composited on white (as the decoder flattens files)
      │ colour  RGB → grey by ITU-R 601 weights (Pillow's "L"), or grey → RGB repeated;
      │         uint8 pixels in integers exactly as Pillow does both
      │ scale   uint8 / 255 (`PIXEL_MAX`, the one place pixels are scaled; floats kept)
      │ resize  to the model's H×W, bilinear with antialiasing (Pillow's BILINEAR filter
      ▼          shrinks with the same widened triangle); skipped when already H×W
    float32 N×H×W×C in [0, 1]: what training fed the network

`prepare` names a step done on the host before this one, recorded in the config:
"mnist" for digit models (`tfcnn.images.digits.mnist_style`: invert, crop to the ink,
centre by mass, as MNIST was made), None for every other model. It cannot run in a graph
(it fits a background surface and thresholds), so exported graphs take images already
digit-like (white ink on black, as MNIST) and `tfcnn predict` does the step for files.

Image files are decoded by `tfcnn.images.decode` and resized by Pillow on the host, as
folder training stored them; this layer then only scales them (exactly training's
pixels). The in-graph resize serves arrays of another size and exported signatures;
for image files it agrees with the host's (measured in docs/benchmarks.md, "Exports").
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcnn.images.prepare import PIXEL_MAX, PREPARE_STEPS

# ITU-R 601-2 luma, the weights Pillow's convert("L") uses (in 1/1000s).
_LUMA = (0.299, 0.587, 0.114)


def scale_pixels(images: Any) -> tf.Tensor:
    """float32 images in [0, 1]: uint8 pixels divided by `PIXEL_MAX`, floats as they are.

    Training's pipeline and this layer both scale through here, so the network sees the
    same numbers from either.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / PIXEL_MAX
    return tf.cast(images, tf.float32)


@keras.saving.register_keras_serializable(package="tfcnn")
class Preprocessor(keras.layers.Layer):
    """A model's preprocessing (see the module docstring); `call` runs in a graph.

    Example:
        >>> p = Preprocessor((28, 28, 1), prepare="mnist")
        >>> p(np.zeros((2, 56, 40, 3), np.uint8)).shape
        TensorShape([2, 28, 28, 1])
        >>> Preprocessor.from_config(p.get_config()).prepare
        'mnist'
    """

    def __init__(self, image_shape: tuple[int, int, int] | list[int] = (28, 28, 1),
                 prepare: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        height, width, channels = (int(n) for n in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape: expected H×W×1 or H×W×3, got {tuple(image_shape)}")
        if prepare not in (None, *PREPARE_STEPS):
            raise ValueError(f"prepare: expected None or one of {', '.join(PREPARE_STEPS)}, "
                             f"got {prepare!r}")
        self.image_shape = (height, width, channels)
        self.prepare = prepare
        self.built = True  # no weights to create, whatever the input's shape

    @classmethod
    def from_legacy(cls, image_shape: Any, preprocessing: str) -> Preprocessor:
        """The preprocessor of a model saved before models carried one: its old tag,
        "mnist" (digits) or "scale" (a plain resize); ValueError for another tag."""
        if preprocessing not in ("mnist", "scale"):
            raise ValueError(f"unknown preprocessing {preprocessing!r} (expected mnist or "
                             "scale)")
        return cls(tuple(image_shape), prepare="mnist" if preprocessing == "mnist" else None)

    @property
    def tag(self) -> str:
        """The short name /info and old configs use: "mnist" (digits) or "scale"."""
        return "mnist" if self.prepare == "mnist" else "scale"

    def call(self, images: Any) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(f"images: expected a batch N×H×W×C, got rank {images.shape.rank}")
        if images.dtype == tf.uint8:
            # Alpha and colour in integers, as the host decoder does them, then scaled.
            pixels = _to_channels(tf.cast(images, tf.int32), self.image_shape[2], True)
            x = scale_pixels(tf.cast(pixels, tf.uint8))
        else:
            x = _to_channels(scale_pixels(images), self.image_shape[2], False)
        return _resize(x, self.image_shape[:2])

    def to_input(self, batch: np.ndarray) -> np.ndarray:
        """`call` on a numpy batch, as numpy; a batch already of the model's shape is
        scaled in numpy (the same float32 division), with no TensorFlow call."""
        batch = np.asarray(batch)
        if batch.ndim == 4 and batch.shape[1:] == self.image_shape:
            if batch.dtype == np.uint8:
                return batch.astype(np.float32) / np.float32(PIXEL_MAX)
            return batch.astype(np.float32, copy=False)
        return self(batch).numpy()

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[Any, ...]:
        return (input_shape[0], *self.image_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "prepare": self.prepare}


def _flatten_alpha(x: tf.Tensor, integer: bool) -> tf.Tensor:
    """Grey+alpha (2 channels) or RGBA (4) composited on white; other images unchanged.

    Integer pixels (0-255, int32) are blended as Pillow pastes through a mask (the decoder's
    `flatten`): (c·a + 255·(255 − a) + 128) divided by 255 with its rounding, so a file and
    its decoded array give the same pixels here as there."""
    channels = x.shape[-1]
    if channels not in (2, 4):
        return x
    colour, alpha = x[..., :channels - 1], x[..., channels - 1:]
    if not integer:
        return colour * alpha + (1.0 - alpha)
    total = colour * alpha + 255 * (255 - alpha) + 128
    shift = tf.bitwise.right_shift
    return shift(shift(total, 8) + total, 8)


def _grey(x: tf.Tensor, integer: bool) -> tf.Tensor:
    """RGB → grey by ITU-R 601 luma; integer pixels exactly as Pillow's convert("L")
    ((R·19595 + G·38470 + B·7471 + 2^15) >> 16)."""
    if not integer:
        return tf.reduce_sum(x * tf.constant(_LUMA, tf.float32), axis=-1, keepdims=True)
    weighted = x * tf.constant((19595, 38470, 7471), tf.int32)
    return tf.bitwise.right_shift(tf.reduce_sum(weighted, axis=-1, keepdims=True) + 0x8000, 16)


def _convert_known(x: tf.Tensor, channels: int, integer: bool) -> tf.Tensor:
    """Images with a known channel count (1-4) as `channels` (1 or 3) channels."""
    x = _flatten_alpha(x, integer)
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 3 and channels == 1:
        return _grey(x, integer)
    if have == 1 and channels == 3:
        return tf.tile(x, (1, 1, 1, 3))
    raise ValueError(f"images: expected 1, 2, 3 or 4 channels, got {have}")


def _to_channels(x: tf.Tensor, channels: int, integer: bool) -> tf.Tensor:
    """`_convert_known`, choosing at run time when the channel count is not static (an
    exported signature taking any uint8 image); a count outside 1-4 fails the call."""
    if x.shape[-1] is not None:
        return _convert_known(x, channels, integer)
    have = tf.shape(x)[-1]
    tf.debugging.assert_less_equal(have, 4, "images: expected 1, 2, 3 or 4 channels")
    branches = [lambda n=n: _convert_known(tf.ensure_shape(x, (None, None, None, n)),
                                           channels, integer) for n in (1, 2, 3, 4)]
    return tf.switch_case(have - 1, branches)


def _resized(x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Antialiased bilinear resize, kept in [0, 1] (float rounding can pass 1 by an ulp)."""
    resized = tf.image.resize(x, (height, width), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def _resize(x: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    height, width = size
    static = tuple(x.shape[1:3])
    if static == (height, width):
        return x
    if None not in static:
        return _resized(x, height, width)
    shape = tf.shape(x)
    same = tf.logical_and(tf.equal(shape[1], height), tf.equal(shape[2], width))
    return tf.cond(same, lambda: tf.ensure_shape(x, (None, height, width, x.shape[-1])),
                   lambda: _resized(x, height, width))
