"""`explain_images`: prepared images → one `Explanation` each (prediction and heatmaps).

The entry point the CLI (`tfcnn explain`), the API (`Classifier.explain`) and the server
share: it predicts, resolves the target class of each image (default: the predicted one),
and runs the chosen methods of `tfcnn.explain.methods` on the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError
from tfcnn.core.prediction import Prediction
from tfcnn.explain import methods as me
from tfcnn.explain.explanation import Explanation, parse_methods


def resolve_target(target: int | str, names: Sequence[str]) -> int:
    """A class index from an index or a class name (a name wins over a digit string);
    `ConfigError` for anything else (a bool, a float such as 1.5, another type)."""
    if isinstance(target, bool) or not isinstance(target, int | str | np.integer):
        raise ConfigError(f"target: expected a class index or name, got {target!r}")
    if isinstance(target, str):
        if target in names:
            return list(names).index(target)
        if not target.lstrip("-").isdigit():
            raise ConfigError(f"target: {target!r} is not a class of this model (classes: "
                              f"{', '.join(names)})")
        target = int(target)
    index = int(target)
    if not 0 <= index < len(names):
        raise ConfigError(f"target: class index {index} out of range ({len(names)} classes)")
    return index


def resolve_targets(targets: Any, predicted: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """One class index per image: `predicted` for None, one target for all, or a list."""
    if targets is None:
        return predicted.astype(np.int32)
    if isinstance(targets, int | str | np.integer | float):  # float/bool: refused there
        return np.full(len(predicted), resolve_target(targets, names), np.int32)
    try:
        targets = list(targets)
    except TypeError:
        raise ConfigError(f"target: expected a class index or name, got {targets!r}") from None
    if len(targets) != len(predicted):
        raise ConfigError(f"targets: {len(targets)} given for {len(predicted)} images")
    chosen = [resolve_target(t, names) if t is not None else int(p)
              for t, p in zip(targets, predicted, strict=True)]
    return np.asarray(chosen, np.int32)


def attributions(model: Any, images: np.ndarray, targets: np.ndarray, method: str
                 ) -> np.ndarray:
    """One method's (N, H, W) maps with its default settings."""
    if method == "gradcam":
        return me.gradcam(model, images, targets)
    if method == "integrated-gradients":
        return me.integrated_gradients(model, images, targets)
    return me.occlusion(model, images, targets)


def explain_images(model: Any, images: Any, methods: str | Sequence[str] = ("gradcam",),
                   targets: Any = None, sources: Sequence[str] | None = None,
                   top_k: int = 3) -> list[Explanation]:
    """Explain each prepared image (float32 (N, H, W, C) in [0, 1]) with `methods`.

    `methods`: names from "gradcam", "integrated-gradients", "occlusion", or "all".
    `targets`: None (each image's predicted class), one class (index or name) for every
    image, or one per image (None entries: the predicted class). `sources`: what each
    `Prediction.source` says (default "array[i]").
    """
    chosen = parse_methods(methods)
    model = me.trained(model)
    x = me.as_batch(model, images)
    probs = model.predict_proba(x)
    names = model.class_names
    t = resolve_targets(targets, probs.argmax(axis=1), names)
    maps = {method: attributions(model, x, t, method) for method in chosen}
    if sources is not None and len(sources) != len(x):
        raise ConfigError(f"sources: {len(sources)} names for {len(x)} images")
    out = []
    for i in range(len(x)):
        source = sources[i] if sources is not None else f"array[{i}]"
        out.append(Explanation(
            prediction=Prediction.from_probabilities(probs[i], names, top_k, source=source),
            heatmaps={m: maps[m][i] for m in chosen}, image=x[i], target=int(t[i]),
            target_label=names[t[i]]))
    return out
