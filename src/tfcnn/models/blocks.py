"""The residual block of the notation (`Rn`, `RnSs`): a layer holding its own sublayers.

Two 3x3 same-padded convolutions, each followed by batch normalisation (He et al., 2016,
"basic block"); the block's input is added to their output, through a 1x1 convolution and
batch norm when the channel count or the stride changes, and a ReLU follows the sum.
The convolutions have no bias (the batch norm after each has an offset).

One layer per block keeps a NotationModel a plain sequence of layers; `functional()` gives
the same sublayers as an ordinary Keras functional model, so an exported `.keras` file
loads without tfcnn.
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

from typing import Any

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="tfcnn")
class ResidualBlock(layers.Layer):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, then ReLU."""

    def __init__(self, filters: int, strides: int = 1, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.seed = seed
        sub = {"dtype": self.dtype_policy, "use_bias": False, "padding": "same"}
        # He initialisation suits ReLU networks; each convolution gets its own fixed seed.
        self.conv1 = layers.Conv2D(filters, 3, strides=strides, name="conv_a",
                                   kernel_initializer=keras.initializers.HeNormal(seed), **sub)
        self.norm1 = layers.BatchNormalization(name="bn_a", dtype=self.dtype_policy)
        self.conv2 = layers.Conv2D(filters, 3, name="conv_b",
                                   kernel_initializer=keras.initializers.HeNormal(seed + 1),
                                   **sub)
        self.norm2 = layers.BatchNormalization(name="bn_b", dtype=self.dtype_policy)
        self.project: layers.Conv2D | None = None
        self.project_norm: layers.BatchNormalization | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.project = layers.Conv2D(
                self.filters, 1, strides=self.strides, use_bias=False, name="project",
                kernel_initializer=keras.initializers.HeNormal(self.seed + 2),
                dtype=self.dtype_policy)
            self.project_norm = layers.BatchNormalization(name="bn_project",
                                                          dtype=self.dtype_policy)
            self.project.build(input_shape)
            self.project_norm.build(self.project.compute_output_shape(input_shape))
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.norm1.build(shape)
        self.conv2.build(shape)
        self.norm2.build(shape)
        self.built = True

    def call(self, x: Any, training: bool = False) -> Any:
        y = keras.ops.relu(self.norm1(self.conv1(x), training=training))
        y = self.norm2(self.conv2(y), training=training)
        if self.project is not None:
            x = self.project_norm(self.project(x), training=training)
        return keras.ops.relu(y + x)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.conv1.compute_output_shape(input_shape)

    def functional(self, input_shape: tuple[int | None, ...]) -> keras.Model:
        """The block as a functional model of stock Keras layers sharing this block's weights
        (inference: its batch norms use their moving statistics)."""
        x = inputs = keras.Input(shape=input_shape[1:])
        y = layers.ReLU()(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.project is not None:
            x = self.project_norm(self.project(x))
        outputs = layers.ReLU()(layers.Add()([y, x]))
        return keras.Model(inputs, outputs, name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "seed": self.seed}
