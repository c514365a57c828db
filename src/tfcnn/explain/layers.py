"""What the convolutions compute: the convolutions' feature maps for one image, the first
layer's filters, and their figures (`tfcnn explain --layers`).

A large network has many convolutions (keras:MobileNetV3Small 52, up to 576 channels), too
many to draw for every image: the figures show at most `MAX_LAYERS` of them, evenly spaced
from the first to the last (those with maps of at least 2×2 first: a squeeze-and-excite
convolution's 1×1 map shows nothing), and of each the `MAX_CHANNELS` strongest channels
(highest mean absolute activation), strongest first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError
from tfcnn.explain.explanation import MAX_CHANNELS, MAX_LAYERS
from tfcnn.explain.graph import conv_recorder, require_convs
from tfcnn.explain.methods import as_batch
from tfcnn.models.mirror import MirrorConv2D


def _network(model: Any) -> Any:
    """The Keras network of a model, a `Classifier` (`keras_model`), a `TrainedModel`
    (`network`) or a Keras model itself."""
    for attribute in ("keras_model", "network"):
        inner = getattr(model, attribute, None)
        if inner is not None:
            return inner
    return model


def feature_maps(model: Any, image: Any) -> list[tuple[str, np.ndarray]]:
    """(layer name, float32 H'×W'×C' maps) for every convolution, in the order they run,
    for one prepared image (H×W×C, or H×W for grey models). Maps are after the layer's
    ReLU (see `tfcnn.explain.graph`)."""
    model = _network(model)
    x = as_batch(model, image)
    if len(x) != 1:
        raise ValueError(f"feature_maps: one image, got {len(x)}")
    maps, _ = conv_recorder(model)(x)
    return [(name, np.asarray(value, dtype=np.float32)[0]) for name, value in maps
            if len(value.shape) == 4]


def first_layer_filters(model: Any) -> tuple[str, np.ndarray]:
    """(name, float32 k×k×in×out kernel) of the model's first convolution; a mirror
    convolution's full kernel (its filters, then their mirror images). `ModelSpecError`
    for a model without convolutions."""
    conv = require_convs(_network(model), "showing filters")[0]
    if isinstance(conv, MirrorConv2D):
        kernel = conv.full_kernel()
    elif hasattr(conv, "depthwise_kernel"):  # Depthwise / Separable: the spatial filters
        kernel = conv.depthwise_kernel
    else:
        kernel = conv.kernel
    return conv.name, np.asarray(kernel, dtype=np.float32)


def check_limit(value: int, name: str) -> int:
    """`value` if it is 0 (no limit) or a positive count; `ConfigError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ConfigError(f"{name}: expected 0 (all) or a positive integer, got {value!r}")
    return int(value)


def chosen_layers(maps: list[tuple[str, np.ndarray]], max_layers: int = MAX_LAYERS
                  ) -> list[tuple[str, np.ndarray]]:
    """At most `max_layers` of `maps` (0: all), evenly spaced from the first to the last,
    in network order; among maps of at least 2×2 when there are any."""
    check_limit(max_layers, "max_layers")
    if not max_layers or len(maps) <= max_layers:
        return list(maps)
    spatial = [m for m in maps if min(m[1].shape[:2]) >= 2]
    pool = spatial or list(maps)
    if len(pool) <= max_layers:
        return pool
    # floor(x + 0.5): consecutive picks are at least 1 apart, so they never repeat.
    picks = np.floor(np.linspace(0, len(pool) - 1, max_layers) + 0.5).astype(int)
    return [pool[i] for i in picks]


def strongest_channels(maps: np.ndarray, max_channels: int = MAX_CHANNELS) -> list[int]:
    """Indices of the `max_channels` channels of H'×W'×C' `maps` with the highest mean
    absolute activation, strongest first (ties: lower index first); 0, or a count of at
    least C': every channel, in order."""
    check_limit(max_channels, "max_channels")
    count = maps.shape[-1]
    if not max_channels or max_channels >= count:
        return list(range(count))
    strength = np.abs(maps).reshape(-1, count).mean(axis=0)
    return [int(k) for k in np.argsort(-strength, kind="stable")[:max_channels]]


def save_layer_figures(model: Any, image: Any, out_dir: str | os.PathLike[str], stem: str,
                       max_layers: int = MAX_LAYERS, max_channels: int = MAX_CHANNELS
                       ) -> dict[str, str]:
    """Write `<stem>-layer-<name>.png` (a grid per chosen convolution: `chosen_layers`,
    `strongest_channels`) and `<stem>-filters.png` (the first layer's filters) in
    `out_dir`, one figure at a time; returns name → path."""
    from tfcnn.explain.figures import feature_map_figure, filters_figure, save_and_close

    check_limit(max_layers, "max_layers")
    check_limit(max_channels, "max_channels")
    out = Path(out_dir)
    written: dict[str, str] = {}
    for name, maps in chosen_layers(feature_maps(model, image), max_layers):
        figure = feature_map_figure(name, maps, strongest_channels(maps, max_channels))
        written[name] = str(save_and_close(figure, out / f"{stem}-layer-{name}.png"))
    name, kernel = first_layer_filters(model)
    written["filters"] = str(save_and_close(filters_figure(name, kernel),
                                            out / f"{stem}-filters.png"))
    return written
