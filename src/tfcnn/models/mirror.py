"""Layers for networks that are invariant to left-right mirroring by construction.

A mirror convolution (`nMk` in the notation) learns n/2 filters and applies each one together
with its mirror image, so its n output channels come in two halves: the responses to the
filters, then to their mirror images. Mirroring the input then mirrors every feature map and
swaps the two halves (the group-equivariant construction of Cohen & Welling, 2016, for the
two-element group {identity, mirror}). The network keeps that property layer by layer:
mirror batch norm shares one set of statistics between a filter and its mirror image,
pooling and ReLU act on each channel alone, and `MirrorFold` finally adds each map to the
mirror image of its partner, which mirroring the input leaves unchanged. Everything after the
fold sees the same numbers for an image and for its mirror image.

At a given channel count the network costs what an ordinary one does per image, with half
the convolution weights. Mirror-invariant labels (clothes) are what it is for; digits are not
(a mirrored 2 is not a 2).
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from tfcnn.models.blocks import ResidualBlock


def mirror(images: Any) -> Any:
    """Images (N, H, W, C) mirrored left to right."""
    return ops.flip(images, axis=2)


def swap_halves(x: Any, axis: int = -1) -> Any:
    """The two halves of `axis` in the other order."""
    first, second = ops.split(x, 2, axis=axis)
    return ops.concatenate([second, first], axis=axis)


@keras.saving.register_keras_serializable(package="tfcnn")
class MirrorConv2D(layers.Layer):
    """A valid-padding convolution whose filters come in (filter, mirror image) pairs.

    `paired_input` says whether the input comes from another mirror layer (its channels in
    two halves that mirroring swaps) or is an ordinary image.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1,
                 paired_input: bool = False, activation: str | None = None,
                 kernel_initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if filters % 2:
            raise ValueError(f"MirrorConv2D needs an even number of filters, got {filters}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.paired_input = paired_input
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        k, pairs = self.kernel_size, self.filters // 2
        self.kernel = self.add_weight(name="kernel", shape=(k, k, input_shape[-1], pairs),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(pairs,), initializer="zeros")
        self.built = True

    def full_kernel(self) -> Any:
        """The (k, k, in, filters) kernel: the learnt filters, then their mirror images."""
        kernel = self.kernel
        # A mirrored filter meets the input's halves swapped (the mirror image of a
        # "filter" map is a "mirror filter" map), so its input halves swap too.
        partner = swap_halves(kernel, axis=2) if self.paired_input else kernel
        return ops.concatenate([kernel, ops.flip(partner, axis=1)], axis=-1)

    def call(self, x: Any) -> Any:
        y = ops.conv(x, self.full_kernel(), strides=self.strides, padding="valid")
        return self.activation(y + ops.tile(self.bias, [2]))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        def size(n: int | None) -> int | None:
            return None if n is None else (n - self.kernel_size) // self.strides + 1
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "paired_input": self.paired_input,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="tfcnn")
class MirrorBatchNorm(layers.BatchNormalization):
    """Batch normalisation with one mean, variance, scale and offset per filter pair.

    The channel halves are laid side by side along the width (a free reshape), so a filter
    and its mirror image are normalised as one channel of twice the width.
    """

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build((*input_shape[:-1], input_shape[-1] // 2))
        self.input_spec = None  # the input has both halves: twice the channels built for

    def call(self, x: Any, training: bool = False) -> Any:
        shape = ops.shape(x)
        pairs = x.shape[-1] // 2
        side_by_side = ops.reshape(x, (-1, shape[1], shape[2] * 2, pairs))
        return ops.reshape(super().call(side_by_side, training=training), shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="tfcnn")
class MirrorFold(layers.Layer):
    """Each filter's map plus the mirror image of its partner's: unchanged by mirroring."""

    def call(self, x: Any) -> Any:
        first, second = ops.split(x, 2, axis=-1)
        return first + mirror(second)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], input_shape[-1] // 2)


def is_mirror_invariant(model: keras.Model) -> bool:
    """True for a tfcnn network with mirror convolutions (which the notation puts first)."""
    return any(isinstance(layer, MirrorConv2D) for layer in getattr(model, "stack", ()))


def _plain_conv(conv: MirrorConv2D, input_shape: tuple[int | None, ...]) -> layers.Conv2D:
    plain = layers.Conv2D(conv.filters, conv.kernel_size, strides=conv.strides,
                          padding="valid", activation=conv.activation, name=conv.name)
    plain.build(input_shape)
    plain.set_weights([np.asarray(conv.full_kernel()), np.tile(np.asarray(conv.bias), 2)])
    return plain


def _plain_norm(norm: MirrorBatchNorm, input_shape: tuple[int | None, ...]) -> layers.Layer:
    plain = layers.BatchNormalization.from_config(
        {**norm.get_config(), "dtype": "float32"})
    plain.build(input_shape)
    plain.set_weights([np.tile(np.asarray(w), 2) for w in norm.get_weights()])
    return plain


def _plain_fold_dense(dense: layers.Dense, input_shape: tuple[int | None, ...]) -> layers.Dense:
    """The dense layer after a fold, taking both halves itself: a fold is a sum, so the
    mirror half's weights are the dense weights mirrored."""
    _, height, width, channels = input_shape
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    kernel = kernel.reshape(height, width, channels // 2, -1)
    both = np.concatenate([kernel, kernel[:, ::-1]], axis=2).reshape(-1, kernel.shape[-1])
    plain = layers.Dense.from_config({**dense.get_config(), "dtype": "float32"})
    plain.build((None, both.shape[0]))
    plain.set_weights([both, bias])
    return plain


def _sum_halves(channels: int) -> layers.Dense:
    """After global average pooling, a fold is the sum of the two halves (mirroring a map
    leaves its mean unchanged): a fixed linear layer."""
    plain = layers.Dense(channels // 2, use_bias=False, name="fold")
    plain.build((None, channels))
    identity = np.eye(channels // 2, dtype=np.float32)
    plain.set_weights([np.concatenate([identity, identity], axis=0)])
    return plain


def plain_layers(stack: list[layers.Layer],
                 input_shape: tuple[int | None, ...]) -> list[layers.Layer]:
    """Ordinary Keras layers computing what `stack` computes in inference mode.

    Mirror convolutions become convolutions with both halves of the kernel, mirror batch
    norm a batch norm with its statistics repeated, a fold with the dense layer after it
    one dense layer over both halves, a fold before global average pooling that pooling and
    the sum of the halves, and a residual block a functional model of stock layers. Other
    layers are returned as they are. A fold that feeds a convolution has no such form:
    ValueError.
    """
    made: list[layers.Layer] = []
    shape = tuple(input_shape)
    position = 0
    while position < len(stack):
        layer = stack[position]
        if isinstance(layer, MirrorConv2D):
            made.append(_plain_conv(layer, shape))
        elif isinstance(layer, MirrorBatchNorm):
            made.append(_plain_norm(layer, shape))
        elif isinstance(layer, ResidualBlock):
            made.append(layer.functional(shape))
        elif isinstance(layer, MirrorFold):
            flatten, dense = stack[position + 1:position + 3]
            if isinstance(flatten, layers.GlobalAveragePooling2D):
                made += [flatten, _sum_halves(shape[-1])]
                shape = (shape[0], shape[-1] // 2)
                position += 2
                continue
            if not isinstance(flatten, layers.Flatten):
                raise ValueError("the mirror part ends in a convolution: no plain-layer form")
            made += [flatten, _plain_fold_dense(dense, shape)]
            shape = dense.compute_output_shape(flatten.compute_output_shape(
                layer.compute_output_shape(shape)))
            position += 3
            continue
        else:
            made.append(layer)
        shape = layer.compute_output_shape(shape)
        position += 1
    return made
