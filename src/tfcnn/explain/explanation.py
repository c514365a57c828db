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
# `--layers` draws at most this many convolutions, and this many channels of each (0: all).
# Every one of keras:MobileNetV3Small's 52 convolutions with all channels took 96 s an image
# at 48×48 on 2 cores; 8 of 16 channels take a few seconds (docs/benchmarks.md,
# "Explanations at scale").
HEATMAP_DIGITS = 4  # decimals of a 0-1 map in JSON (see heatmap_decimals)
MAX_LAYERS = 8
MAX_CHANNELS = 16


@dataclass(frozen=True)
class Explanation:
    """Why the model answered what it answered, for one image.

    Attributes: `prediction` (a `tfcnn.core.prediction.Prediction`: label, index,
    probability, top-k), `heatmaps` (method name → float32 H×W array: Grad-CAM in [0, 1];
    integrated gradients and occlusion signed, positive where a pixel speaks for the
    target), `image` (the H×W×C input in [0, 1], as the model saw it), `target` (the class
    index explained; by default the predicted one), `target_label`.

    Example:
        >>> e = clf.explain(digit_files[0], method="gradcam")[0]
        >>> e.heatmaps["gradcam"].shape, e.target == e.prediction.index
        ((28, 28), True)
        >>> e.save_figure(tmp / "why.png").name
        'why.png'
    """

    prediction: Prediction
    heatmaps: dict[str, np.ndarray]
    image: np.ndarray
    target: int
    target_label: str

    def to_dict(self, digits: int = HEATMAP_DIGITS) -> dict[str, Any]:
        """A JSON-ready dict: the `predict --json` fields (`Prediction.to_dict`), `target`,
        `target_index` and `heatmaps` (method → H×W nested lists, `heatmap_json`)."""
        return {**self.prediction.to_dict(), "target": self.target_label,
                "target_index": int(self.target),
                "heatmaps": {m: heatmap_json(h, digits) for m, h in self.heatmaps.items()}}

    def figure(self) -> Any:
        """A matplotlib `Figure` (Agg canvas attached): input, top classes, heatmaps."""
        from tfcnn.explain.figures import explanation_figure

        return explanation_figure(self)

    def save_figure(self, path: str | os.PathLike[str]) -> Path:
        """Write `figure()` as a PNG (atomically), then close it; returns the path."""
        from tfcnn.explain.figures import save_and_close

        return save_and_close(self.figure(), path)


def heatmap_decimals(heat: np.ndarray, digits: int = HEATMAP_DIGITS) -> int:
    """How many decimals `heatmap_json` keeps: `digits` for a map whose largest magnitude is
    in (0.1, 1] (Grad-CAM's 0-1), one more per factor of ten below (integrated gradients
    of 0.01-0.1 keep 5), one less per factor above; between 0 and 12. So the largest value
    keeps `digits` significant digits whatever the map's scale."""
    top = float(np.max(np.abs(heat))) if np.size(heat) else 0.0
    if not np.isfinite(top) or top == 0.0:
        return digits
    return int(np.clip(digits - np.ceil(np.log10(top)), 0, 12))


def heatmap_json(heat: Any, digits: int = HEATMAP_DIGITS) -> list[Any]:
    """A heatmap as nested lists of floats for JSON, rounded (`heatmap_decimals`): float32
    maps otherwise print as 0.07919999957084656 where 0.0792 is meant. The rounding is done
    in float64, whose shortest repr of a rounded value is the decimal itself."""
    values = np.asarray(heat, dtype=np.float64)
    return np.round(values, heatmap_decimals(values, digits)).tolist()


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
