"""What the convolutions compute: every convolution's feature maps for one image, the first
layer's filters, and their figures (`tfcnn explain --layers`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.explain.graph import conv_recorder, require_convs
from tfcnn.explain.methods import as_batch
from tfcnn.models.mirror import MirrorConv2D


def feature_maps(model: Any, image: Any) -> list[tuple[str, np.ndarray]]:
    """(layer name, float32 H'×W'×C' maps) for every convolution, in the order they run,
    for one prepared image (H×W×C, or H×W for grey models). Maps are after the layer's
    ReLU (see `tfcnn.explain.graph`)."""
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
    conv = require_convs(model, "showing filters")[0]
    if isinstance(conv, MirrorConv2D):
        kernel = conv.full_kernel()
    elif hasattr(conv, "depthwise_kernel"):  # Depthwise / Separable: the spatial filters
        kernel = conv.depthwise_kernel
    else:
        kernel = conv.kernel
    return conv.name, np.asarray(kernel, dtype=np.float32)


def save_layer_figures(model: Any, image: Any, out_dir: str | os.PathLike[str],
                       stem: str) -> dict[str, str]:
    """Write `<stem>-layer-<name>.png` (a grid per convolution) and `<stem>-filters.png`
    (the first layer's filters) in `out_dir`; returns name → path."""
    from tfcnn.explain.figures import feature_map_figure, filters_figure, save_png

    out = Path(out_dir)
    written: dict[str, str] = {}
    for name, maps in feature_maps(model, image):
        written[name] = str(save_png(feature_map_figure(name, maps),
                                     out / f"{stem}-layer-{name}.png"))
    name, kernel = first_layer_filters(model)
    written["filters"] = str(save_png(filters_figure(name, kernel), out / f"{stem}-filters.png"))
    return written
