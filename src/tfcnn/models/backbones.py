"""Transfer learning: a keras.applications backbone with a new head, as a tfcnn model.

`BackboneModel` (`--model keras:NAME`) is a registered `keras.Model` subclass like
`NotationModel`: it takes 0-1 float images (grey ones are repeated to 3 channels), converts
them to what the backbone expects (x 255, then the family's `preprocess_input`; MobileNetV3,
EfficientNet and ConvNeXt rescale inside the network) with a fixed 1x1 convolution, runs the
backbone without its classifier, then global average pooling, dropout and a dense layer giving
the logits. Like NotationModel, it calls a plain sequence of stock Keras layers, `stack`.
It carries `image_shape`, `class_names`, `preprocessor`, `calibration`, `dataset`, `precision`,
`seed` and
`spec`/`notation` ("keras:NAME"), and saves to and loads from `.keras` files.

Weights come from a file only ("imagenet": the one in Keras's cache, or a path); nothing is
downloaded. With pretrained weights the backbone always runs its batch norms in inference
mode, also while fine-tuning (the known Keras trap: batch statistics of a few small photos
would overwrite ImageNet's). `set_backbone_trainable` freezes the backbone (train the head)
or unfreezes it, all of it or its last layers (fine-tune, with a lower learning rate).

Importing this module imports Keras (and TensorFlow); the CLI imports it lazily.
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

import os
import warnings
from typing import Any

import keras
import numpy as np
from keras import layers

from tfcnn.core.errors import ConfigError, ModelSpecError
from tfcnn.models.metadata import init_metadata, metadata_config
from tfcnn.spec.backbones import Backbone, backbone_of, weights_path

_INITIALIZERS = ("kernel_initializer", "depthwise_initializer")


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _reseed(network: keras.Model, seed: int) -> None:
    """Redraw every kernel with its layer's own initializer, seeded per layer: keras.applications
    draws from Keras's global seed generator, and tfcnn keeps no global random state."""
    for index, layer in enumerate(network.layers):
        kernel = getattr(layer, "kernel", None)
        for attribute in _INITIALIZERS:
            initializer = getattr(layer, attribute, None)
            if kernel is None or initializer is None:
                continue
            config = keras.initializers.serialize(initializer)
            if "seed" not in config.get("config", {}):
                continue  # a constant initializer: nothing random to redraw
            config["config"]["seed"] = seed * 100_000 + index
            kernel.assign(keras.initializers.deserialize(config)(kernel.shape, kernel.dtype))
            break


def _make_backbone(backbone: Backbone, height: int, width: int, seed: int) -> keras.Model:
    constructor = getattr(keras.applications, backbone.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "weights for input shape ... not available"
            network = constructor(include_top=False, weights=None,
                                  input_shape=(height, width, 3))
    except ValueError as exc:
        raise ModelSpecError(f"--model keras:{backbone.name}: cannot be built for "
                             f"{height}x{width} images ({_why(exc)})") from None
    _reseed(network, seed)
    return network


def _with_policy(network: keras.Model, precision: str) -> keras.Model:
    """The same network, each layer computing under the dtype policy `precision` (weights
    stay float32). keras.applications takes no dtype but the global policy, which tfcnn
    leaves alone; cloning layer by layer sets it per layer instead."""
    def clone(layer: Any) -> Any:
        if not isinstance(layer, layers.Layer) or isinstance(layer, layers.InputLayer):
            return layer  # plain operations (add, multiply) hold no state
        return layer.__class__.from_config({**layer.get_config(), "dtype": precision})

    copy = keras.models.clone_model(network, clone_function=clone)
    copy.set_weights(network.get_weights())
    return copy


def input_map(family: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (1, 1, channels, 3), bias (3,)) of the 1x1 convolution taking 0-1 images to
    what the backbone expects: grey repeated to RGB, x 255, then the family's
    `preprocess_input`. Every family's preprocessing is affine per pixel (scaling, channel
    order, mean and deviation per channel), so probing it with black and the three unit
    colours recovers it exactly."""
    module = getattr(keras.applications, family)
    probe = np.concatenate([np.zeros((1, 3)), np.eye(3)]).reshape(4, 1, 1, 3) * 255.0
    out = np.asarray(module.preprocess_input(probe.astype(np.float32)), dtype=np.float64)
    bias = out[0, 0, 0]
    kernel = out[1:, 0, 0] - bias  # row c: the response to channel c at 1.0
    if channels == 1:
        kernel = kernel.sum(axis=0, keepdims=True)
    return kernel.reshape(1, 1, channels, 3).astype(np.float32), bias.astype(np.float32)


@keras.saving.register_keras_serializable(package="tfcnn")
class BackboneModel(keras.Model):
    """A keras.applications backbone and a new head; `call` returns logits."""

    def __init__(self, spec: str, image_shape: tuple[int, int, int] = (224, 224, 3),
                 class_names: tuple[str, ...] | list[str] = (), seed: int = 0,
                 preprocessing: str | None = None, dataset: str = "",
                 precision: str = "float32", dropout: float = 0.2,
                 frozen_statistics: bool = True, preprocessor: Any = None,
                 calibration: Any = None, prepare: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        entry = backbone_of(spec)
        if not class_names:
            raise ModelSpecError(f"model {spec}: needs the class names (one logit each)")
        self.spec = self.notation = "keras:" + entry.name
        # image_shape, class_names, dataset, preprocessor, calibration (models/metadata.py).
        init_metadata(self, image_shape, class_names, dataset, preprocessor, preprocessing,
                      prepare, calibration)
        self.seed = seed
        self.precision = precision
        self.dropout_rate = dropout
        # True: the backbone's batch norms always use their moving statistics (pretrained
        # weights); False: they use batch statistics in training (a backbone from scratch).
        self.frozen_statistics = frozen_statistics
        self.family = entry.module
        kernel, bias = input_map(entry.module, self.image_shape[-1])
        # Mixed precision: the backbone, pooling and dropout compute in bfloat16; the input
        # map (exact 0-255 values) and the logits (for the loss and softmax) in float32.
        dtype = {"dtype": precision} if precision != "float32" else {}
        # One plain sequence of stock layers, like NotationModel's `stack`: export turns it
        # into a functional model that loads without tfcnn. The input preprocessing is a
        # fixed 1x1 convolution (never trained).
        self.stack = [
            layers.Conv2D(3, 1, name="preprocess", trainable=False,
                          kernel_initializer=keras.initializers.Constant(kernel),
                          bias_initializer=keras.initializers.Constant(bias)),
            self._backbone(entry, seed, precision),
            layers.GlobalAveragePooling2D(name="gap", **dtype),
            layers.Dropout(dropout, seed=seed * 1000 + 1, name="dropout", **dtype),
            layers.Dense(len(self.class_names), name="logits",
                         kernel_initializer=keras.initializers.GlorotUniform(
                             seed=seed * 1000 + 2)),
        ]

    def _backbone(self, entry: Backbone, seed: int, precision: str) -> keras.Model:
        network = _make_backbone(entry, *self.image_shape[:2], seed)
        return network if precision == "float32" else _with_policy(network, precision)

    @property
    def preprocess(self) -> layers.Conv2D:
        return self.stack[0]

    @property
    def backbone(self) -> keras.Model:
        return self.stack[1]

    @property
    def gap(self) -> layers.Layer:
        return self.stack[2]

    @property
    def logits(self) -> layers.Dense:
        return self.stack[4]

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.preprocess.build((None, *self.image_shape))
        features = self.backbone.compute_output_shape((None, *self.image_shape[:2], 3))
        self.gap.build(features)
        self.logits.build((None, features[-1]))
        self.built = True

    def call(self, x: Any, training: bool = False) -> Any:
        backbone_training = bool(training) and not self.frozen_statistics
        x = self.backbone(self.preprocess(keras.ops.cast(x, "float32")),
                          training=backbone_training)
        return self.logits(self.stack[3](self.gap(x), training=training))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spec": self.spec, "seed": self.seed,
                "precision": self.precision, "dropout": self.dropout_rate,
                "frozen_statistics": self.frozen_statistics, **metadata_config(self)}


def load_backbone_weights(model: BackboneModel, path: str | os.PathLike[str]) -> None:
    """Load a weights file of the backbone alone (Keras's `.h5` ImageNet files, or what
    `model.backbone.save_weights(...)` wrote); ModelSpecError when it is another network's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one per layer it skips, before it raises
            model.backbone.load_weights(os.fspath(path))
    except Exception as exc:  # Keras raises ValueError, OSError, KeyError... for a bad file
        raise ModelSpecError(f"--weights {os.fspath(path)}: does not fit {model.spec} "
                             f"({_why(exc)})") from None


def build_backbone_model(spec: str, image_shape: tuple[int, int, int],
                         class_names: tuple[str, ...], seed: int, weights: str = "none",
                         prepare: str | None = None, dataset: str = "", dropout: float = 0.2,
                         name: str = "tfcnn", precision: str = "float32") -> BackboneModel:
    """Create the model, built on `image_shape`, with the backbone's weights loaded from
    `weights` ("imagenet": Keras's cache, "none": seeded random ones, or a file's path).
    The backbone comes back trainable; `set_backbone_trainable` freezes it."""
    path = weights_path(spec, weights)
    model = BackboneModel(spec, image_shape, class_names, seed, dataset=dataset,
                          precision=precision, dropout=dropout,
                          frozen_statistics=path is not None, prepare=prepare, name=name)
    model.build((None, *model.image_shape))
    if path is not None:
        load_backbone_weights(model, path)
    return model


def set_backbone_trainable(model: BackboneModel, trainable: bool,
                           fine_tune_layers: int | None = None) -> list[str]:
    """Freeze the backbone (`trainable=False`: only the head trains) or unfreeze it: all of
    it, or its last `fine_tune_layers` layers. With pretrained weights, batch norms stay
    frozen (and in inference mode, see `BackboneModel.call`). Returns the names of the
    backbone layers left trainable that hold weights.

    The trainable variables change: the training step must be traced anew, with a new
    optimizer (it holds one slot per variable it was built on).
    """
    backbone = model.backbone
    backbone.trainable = trainable
    for layer in backbone.layers:  # Keras 3.15 does not pass it on to a functional's layers
        layer.trainable = trainable
    if not trainable:
        return []
    weighted = [layer for layer in backbone.layers if layer.weights]
    if fine_tune_layers is not None:
        if fine_tune_layers < 0:
            raise ConfigError(f"fine-tune layers {fine_tune_layers}: expected 0 or more")
        for layer in weighted[:max(0, len(weighted) - fine_tune_layers)]:
            layer.trainable = False
    if model.frozen_statistics:
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    return [layer.name for layer in weighted if layer.trainable]


def backbone_phase(model: BackboneModel, epoch: int, freeze_epochs: int,
                   fine_tune_layers: int | None = None) -> str:
    """Set the backbone for 0-based `epoch` and name the phase: "head" (frozen backbone, for
    the first `freeze_epochs` epochs), then "fine-tune" (unfrozen as `set_backbone_trainable`
    does). A backbone without pretrained weights trains whole from the start: "all".

    Call it at the start of every epoch (a resumed run too, before restoring its optimizer);
    when the phase differs from the last epoch's, the trainable variables have changed: make
    a new optimizer (the fine-tuning learning rate) and trace the training step anew.
    """
    if not model.frozen_statistics:
        set_backbone_trainable(model, True)
        return "all"
    if epoch < freeze_epochs:
        set_backbone_trainable(model, False)
        return "head"
    set_backbone_trainable(model, True, fine_tune_layers)
    return "fine-tune"
