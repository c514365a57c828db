"""Running a model while keeping its convolutions' outputs: what every explanation needs.

`conv_recorder(model)` gives a function `x → ([(layer name, feature map), ...], logits)`
whose feature maps are the very tensors the rest of the network computes from, so a
`tf.GradientTape` around it can differentiate the logits with respect to any of them.

- A tfcnn notation network (`NotationModel`) is run layer by layer from `model.stack`;
  its convolutions (Conv2D, SeparableConv2D, `MirrorConv2D`) and residual blocks (each
  recorded whole: its output after the sum and ReLU) give the maps. Where a convolution
  has no activation of its own because its ReLU comes after the following max-pool
  (network.py moves it there: the two commute), the map recorded is the convolution's
  output after ReLU, and the pool receives that: the same logits, and the maps are the
  features the network really uses.
- Any other Keras model (functional, a keras.applications backbone nested inside one, any
  depth, as in `BackboneModel` of `--model keras:NAME`) is called whole while its
  convolutions (Conv2D, DepthwiseConv2D, SeparableConv2D, MirrorConv2D) record their
  outputs: each one's `call` is wrapped on the instance for the duration of the call,
  under a lock, so two threads never see each other's wrappers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from tfcnn.core.errors import ModelSpecError
from tfcnn.models.blocks import ResidualBlock
from tfcnn.models.mirror import MirrorConv2D

CONV_TYPES = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, MirrorConv2D)
_HOOK_LOCK = threading.RLock()

Recorder = Callable[[Any], tuple[list[tuple[str, Any]], Any]]


def is_conv(layer: Any) -> bool:
    """True for the layer kinds explanations treat as convolutions."""
    return isinstance(layer, CONV_TYPES)


def _sublayers(layer: Any) -> list[Any]:
    if hasattr(layer, "stack"):
        return list(layer.stack)
    return list(getattr(layer, "layers", []))


def is_feature_layer(layer: Any) -> bool:
    """A notation network's layers whose outputs are recorded: convolutions, residual blocks."""
    return is_conv(layer) or isinstance(layer, ResidualBlock)


def is_notation(model: Any) -> bool:
    """True for a tfcnn notation network (`NotationModel`), run layer by layer."""
    from tfcnn.models.network import NotationModel

    return isinstance(model, NotationModel)


def conv_layers(model: Any) -> list[Any]:
    """Every convolution of `model` in the order it runs, nested models searched through
    (a notation network: its convolutions and residual blocks, as `conv_recorder` records).
    A transfer-learning model's fixed input conversion (`BackboneModel.preprocess`, a 1×1
    convolution that is never trained) is not one of them."""
    if is_notation(model):
        return [layer for layer in model.stack if is_feature_layer(layer)]
    fixed = getattr(model, "preprocess", None)
    found: list[Any] = []
    for layer in _sublayers(model):
        if layer is fixed:
            continue
        if is_conv(layer):
            found.append(layer)
        elif _sublayers(layer):
            found.extend(conv_layers(layer))
    return found


def _linear(layer: Any) -> bool:
    return getattr(layer, "activation", None) is keras.activations.linear


def _relu_after_pool(stack: list[Any], index: int) -> bool:
    """The conv at `index` leaves its ReLU to a ReLU layer after the next max-pool."""
    return (_linear(stack[index]) and index + 2 < len(stack)
            and isinstance(stack[index + 1], layers.MaxPooling2D)
            and isinstance(stack[index + 2], layers.ReLU))


def _notation_recorder(model: Any) -> Recorder:
    stack = list(model.stack)

    def run(x: Any) -> tuple[list[tuple[str, Any]], Any]:
        maps: list[tuple[str, Any]] = []
        for index, layer in enumerate(stack):
            x = layer(x, training=False)  # Keras drops the flag for layers without it
            if is_feature_layer(layer):
                if _relu_after_pool(stack, index):
                    x = keras.ops.relu(x)
                maps.append((layer.name, x))
        return maps, x

    return run


class _Hooks:
    """Context manager: each convolution records its output while the model runs."""

    def __init__(self, convs: list[Any]) -> None:
        self.convs = convs
        self.maps: list[tuple[str, Any]] = []

    def _wrap(self, layer: Any) -> Callable[..., Any]:
        original = layer.call

        def call(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            self.maps.append((layer.name, out))
            return out

        return call

    def __enter__(self) -> _Hooks:
        _HOOK_LOCK.acquire()
        for layer in self.convs:
            layer.call = self._wrap(layer)
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.convs:
            del layer.call  # the instance attribute: the class's method shows again
        _HOOK_LOCK.release()


def _hooked_recorder(model: Any) -> Recorder:
    convs = conv_layers(model)

    def run(x: Any) -> tuple[list[tuple[str, Any]], Any]:
        with _Hooks(convs) as hooks:
            logits = model(x, training=False)
        return hooks.maps, logits

    return run


def conv_recorder(model: Any) -> Recorder:
    """`x → (feature maps of every convolution, logits)` for a tfcnn model (see above)."""
    if is_notation(model):
        return _notation_recorder(model)
    return _hooked_recorder(model)


def require_convs(model: Any, method: str) -> list[Any]:
    """The model's convolutions, or a `ModelSpecError` naming `method` when there are none."""
    convs = conv_layers(model)
    if not convs:
        notation = getattr(model, "notation", None)
        what = f"model {notation!r}" if notation else f"model {getattr(model, 'name', '')!r}"
        raise ModelSpecError(f"{what} has no convolution: {method} needs one (use "
                             "integrated-gradients or occlusion)")
    return convs


