"""The Keras model built from a layer notation, and loading it back.

`NotationModel` is a `keras.Model` subclass with a tutorial-style `call(x, training=...)`.
It returns logits; answers (the softmax, with the model's temperature) come from
`tfcnn.models.trained.TrainedModel` (the tutorial applied softmax inside the model *and*
used a from-logits loss).
The class is registered with Keras, so a saved `.keras` file reloads in a fresh process
once this module is imported (`load_model` below does that).

Importing this module imports Keras (and TensorFlow); the CLI imports it lazily.
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

import os
from typing import Any

import keras
from keras import layers

from tfcnn.models import mirror as mi
from tfcnn.models.blocks import ResidualBlock
from tfcnn.models.metadata import init_metadata, metadata_config
from tfcnn.spec import notation as nt


def _seeded(seed: int, index: int) -> dict[str, Any]:
    # Each layer gets its own fixed seed: initial weights depend on the run's seed only,
    # never on a global random state.
    return {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed * 1000 + index)}


def _block_seed(seed: int, index: int) -> int:
    # A residual block seeds its 2-3 convolutions from here on: clear of the other layers'.
    return 10_000_000 + 3 * (seed * 1000 + index)


def _conv(spec: nt.Conv, activation: str | None, name: Any, seed: int, index: int,
          dtype: dict[str, str]) -> keras.layers.Layer:
    padding = "same" if spec.same else "valid"
    if spec.separable:
        init = keras.initializers.GlorotUniform(seed=seed * 1000 + index)
        return layers.SeparableConv2D(spec.filters, spec.kernel, strides=spec.stride,
                                      padding=padding, activation=activation,
                                      depthwise_initializer=init, pointwise_initializer=init,
                                      name=name("sepconv"), **dtype)
    return layers.Conv2D(spec.filters, spec.kernel, strides=spec.stride, padding=padding,
                         activation=activation, name=name("conv"), **_seeded(seed, index),
                         **dtype)


def _make_layers(specs: list[nt.LayerSpec], seed: int,
                 precision: str = "float32") -> list[keras.layers.Layer]:
    made: list[keras.layers.Layer] = []
    # Mixed precision: every layer computes in bfloat16 (weights stay float32), except the
    # logits layer, so the loss and softmax see float32.
    dtype = {"dtype": precision} if precision != "float32" else {}
    flattened = False
    counts: dict[str, int] = {}

    def name(kind: str) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]}"

    last = len(specs) - 1
    relu_after_pool = False
    paired = False  # inside the mirror part: channels come in (filter, mirror image) halves
    for index, spec in enumerate(specs):
        if paired and (isinstance(spec, nt.Dense | nt.Residual | nt.GlobalPool)
                       or isinstance(spec, nt.Conv) and not spec.mirror):
            made.append(mi.MirrorFold(name="fold", **dtype))
            paired = False
        if isinstance(spec, nt.Conv):
            # ReLU and max-pooling commute (both monotone), so a conv followed by a pool gets
            # its ReLU after the pool: the same numbers, on a quarter of the values.
            relu_after_pool = index < last and isinstance(specs[index + 1], nt.Pool)
            activation = None if relu_after_pool else "relu"
            if spec.mirror:
                made.append(mi.MirrorConv2D(spec.filters, spec.kernel, strides=spec.stride,
                                            paired_input=paired, activation=activation,
                                            name=name("mirrorconv"), **_seeded(seed, index),
                                            **dtype))
                paired = True
            else:
                made.append(_conv(spec, activation, name, seed, index, dtype))
        elif isinstance(spec, nt.Residual):
            made.append(ResidualBlock(spec.filters, spec.stride, seed=_block_seed(seed, index),
                                      name=name("residual"), **dtype))
        elif isinstance(spec, nt.GlobalPool):
            made.append(layers.GlobalAveragePooling2D(name="gap", **dtype))
            flattened = True  # one value per channel already
        elif isinstance(spec, nt.Pool):
            made.append(layers.MaxPool2D(pool_size=spec.size, name=name("pool"), **dtype))
            if relu_after_pool:
                made.append(layers.ReLU(name=name("relu"), **dtype))
                relu_after_pool = False
        elif isinstance(spec, nt.BatchNorm):
            norm = mi.MirrorBatchNorm if paired else layers.BatchNormalization
            made.append(norm(name=name("batchnorm"), **dtype))
        elif isinstance(spec, nt.Dropout):
            made.append(layers.Dropout(spec.rate, seed=seed * 1000 + index, name=name("dropout"),
                                       **dtype))
        elif isinstance(spec, nt.Dense):
            if not flattened:
                made.append(layers.Flatten(name="flatten", **dtype))
                flattened = True
            activation = None if index == last else "relu"
            made.append(layers.Dense(spec.units, activation=activation,
                                     name="logits" if index == last else name("dense"),
                                     **_seeded(seed, index), **({} if index == last else dtype)))
    return made


@keras.saving.register_keras_serializable(package="tfcnn")
class NotationModel(keras.Model):
    """A CNN described by a notation string; `call` returns logits of float32 [0, 1]
    images of `image_shape` (its `preprocessor` makes those from users' images)."""

    def __init__(self, notation: str, image_shape: tuple[int, int, int] = (28, 28, 1),
                 class_names: tuple[str, ...] | list[str] = (), seed: int = 0,
                 preprocessing: str | None = None, dataset: str = "",
                 precision: str = "float32", preprocessor: Any = None,
                 calibration: Any = None, prepare: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notation = notation
        # image_shape, class_names, dataset, preprocessor, calibration (models/metadata.py);
        # `preprocessing` is the tag of models saved before they had a preprocessor.
        init_metadata(self, image_shape, class_names, dataset, preprocessor, preprocessing,
                      prepare, calibration)
        self.seed = seed
        self.precision = precision  # "float32", or "mixed_bfloat16" (training speed, CPU/TPU)
        self.stack = _make_layers(nt.parse_notation(notation), seed, precision)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = tuple(input_shape)
        for layer in self.stack:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, x: Any, training: bool = False) -> Any:
        for layer in self.stack:
            if isinstance(layer, layers.BatchNormalization | layers.Dropout | ResidualBlock):
                x = layer(x, training=training)
            else:
                x = layer(x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "notation": self.notation, "seed": self.seed,
                "precision": self.precision, **metadata_config(self)}


def build_model(notation: str, image_shape: tuple[int, int, int], class_names: tuple[str, ...],
                seed: int, prepare: str | None = None, dataset: str = "",
                name: str = "tfcnn", precision: str = "float32") -> NotationModel:
    """Create the model and its weights (built on `image_shape`, batch dimension free).

    `prepare`: the host-side step user images get first ("mnist" for digit models; see
    `tfcnn.images.preprocessor`)."""
    model = NotationModel(notation, image_shape, class_names, seed, dataset=dataset,
                          precision=precision, prepare=prepare, name=name)
    model.build((None, *image_shape))
    return model


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a `.keras` file saved by tfcnn: a NotationModel or a BackboneModel.

    A model trained in mixed precision comes back computing in float32 (its weights are
    float32 already): inference, export and serving then need no bfloat16 kernels.
    """
    from tfcnn.models import backbones  # noqa: F401  (registers BackboneModel)

    model = keras.saving.load_model(os.fspath(path), compile=False)
    if getattr(model, "precision", "float32") == "float32":
        return model
    config = {**model.get_config(), "precision": "float32"}
    plain = type(model).from_config(config)  # a NotationModel or a BackboneModel
    plain.build((None, *plain.image_shape))
    plain.set_weights(model.get_weights())
    return plain
