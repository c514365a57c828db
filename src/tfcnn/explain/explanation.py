"""`Explanation`: one image's prediction with the heatmaps of the attribution methods, and
its figure (the input as the model saw it, the top classes, each heatmap over the input).

Plain numpy and matplotlib (object-oriented API on an Agg canvas, no pyplot state, as in
`tfcnn.evaluation.plots`); no TensorFlow, so `from tfcnn.explain import Explanation` is
cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.prediction import Prediction

METHODS = ("gradcam", "integrated-gradients", "occlusion")
TITLES = {"gradcam": "Grad-CAM", "integrated-gradients": "Integrated gradients",
          "occlusion": "Occlusion"}
SIGNED = ("integrated-gradients", "occlusion")  # maps with meaningful negative values


@dataclass(frozen=True)
class Explanation:
    """Why the model answered what it answered, for one image.

    Attributes: `prediction` (a `tfcnn.core.prediction.Prediction`: label, index,
    probability, top-k), `heatmaps` (method name → float32 H×W array: Grad-CAM in [0, 1];
    integrated gradients and occlusion signed, positive where a pixel speaks for the
    target), `image` (the H×W×C input in [0, 1], as the model saw it), `target` (the class
    index explained; by default the predicted one), `target_label`.
    """

    prediction: Prediction
    heatmaps: dict[str, np.ndarray]
    image: np.ndarray
    target: int
    target_label: str

    def figure(self) -> Any:
        """A matplotlib `Figure` (Agg canvas attached): input, top classes, heatmaps."""
        from tfcnn.explain.figures import explanation_figure

        return explanation_figure(self)

    def save_figure(self, path: str | os.PathLike[str]) -> Path:
        """Write `figure()` as a PNG (atomically); returns the path."""
        from tfcnn.explain.figures import save_png

        return save_png(self.figure(), path)


def parse_methods(methods: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Method names (or "all"; a comma-separated string works too), checked, in order."""
    from tfcnn.core.errors import ConfigError

    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else \
        [str(m).strip() for m in methods]
    if "all" in names:
        return METHODS
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(f"method: {bad[0] if bad else 'none'!r} is not an explanation "
                          f"method (expected {', '.join(METHODS)} or all)")
    return tuple(dict.fromkeys(names))
