"""Explanations: why a model answers what it answers (Grad-CAM, integrated gradients,
occlusion; feature maps and filters).

`Explanation` and the method names import without TensorFlow; `explain_images`,
`gradcam`, `integrated_gradients`, `occlusion`, `feature_maps` and `first_layer_filters`
load on first use (they import TensorFlow).

Modules: explanation (the dataclass), graph (recording convolution outputs), methods (the
attribution methods), layers (feature maps, filters), figures (matplotlib and PNG), batch
(`explain_images`).
"""

from __future__ import annotations

from typing import Any

from tfcnn.explain.explanation import METHODS, Explanation, parse_methods

_LAZY = {"explain_images": "batch", "gradcam": "methods", "integrated_gradients": "methods",
         "occlusion": "methods", "feature_maps": "layers", "first_layer_filters": "layers",
         "save_layer_figures": "layers"}

__all__ = ["METHODS", "Explanation", "parse_methods", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tfcnn.explain.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tfcnn.explain' has no attribute {name!r}")
