"""Running a model on prepared images: probabilities (with optional TTA) and predictions.

`predict_inputs` serves `Classifier.predict` (any input; the first bad one raises);
`predict_files` serves `tfcnn predict` (files; a file that cannot be read becomes an error
entry, never a failed run). Both prepare images with `tfcnn.predict.inputs` and run the
model in batches of `BATCH_SIZE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.core.prediction import Prediction
from tfcnn.evaluation.tta import tta_probabilities
from tfcnn.predict.inputs import file_input, model_inputs

BATCH_SIZE = 256  # images per inference call: bounded memory, few calls


def class_names(model: Any, n_classes: int) -> list[str]:
    """The model's class names, or "0", "1", ... when it has none."""
    return list(getattr(model, "class_names", ())) or [str(i) for i in range(n_classes)]


def prediction(file: str, probs: Any, names: list[str], top_k: int) -> dict[str, Any]:
    """The `predict --json` object for one image's class probabilities (`Prediction`)."""
    return Prediction.from_probabilities(probs, names, top_k, source=file).to_dict()


def batch_probabilities(model: Any, batch: np.ndarray, *, tta: bool = False,
                        mirror: bool = False) -> np.ndarray:
    """float64 (N, classes) probabilities of a float32 N×H×W×C batch, in chunks of
    `BATCH_SIZE`; with `tta`, averaged over each image and its one-pixel shifts (and mirror
    images when `mirror`), as `tfcnn.evaluation.tta` defines them."""
    from tfcnn.models.network import probabilities

    def run(images: np.ndarray) -> np.ndarray:
        parts = [np.asarray(probabilities(model, images[i:i + BATCH_SIZE]), dtype=np.float64)
                 for i in range(0, len(images), BATCH_SIZE)]
        return np.concatenate(parts)

    return tta_probabilities(run, batch, mirror=mirror) if tta else run(batch)


def _check_top_k(top_k: int) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"top_k: expected a positive integer, got {top_k!r}")


def predict_inputs(model: Any, inputs: Any, *, top_k: int = 3, tta: bool = False,
                   mirror: bool = False, preprocess: bool = True) -> list[Prediction]:
    """One `Prediction` per image of `inputs` (see `model_inputs`), in order."""
    _check_top_k(top_k)
    batch, sources = model_inputs(inputs, model.preprocessing, tuple(model.image_shape),
                                  preprocess)
    probs = batch_probabilities(model, batch, tta=tta, mirror=mirror)
    names = class_names(model, probs.shape[1])
    return [Prediction.from_probabilities(row, names, top_k, source)
            for row, source in zip(probs, sources, strict=True)]


def predict_files(model: Any, paths: list[str | Path], *, top_k: int = 3,
                  preprocess: bool = True, tta: bool = False, mirror: bool = False,
                  expected: dict[Path, str] | None = None) -> list[dict[str, Any]]:
    """One result per path, in order: the prediction (`Prediction.to_dict()`), or
    `{"file", "error"}` for a file that gives no image.

    `expected`: a class name per file (its class folder); when it is one of the model's
    classes the result adds "expected" and "correct". Images are prepared as the model
    was trained (`preprocess=False`: resize only) and run in batches; `tta` and `mirror` as
    in `batch_probabilities`.
    """
    _check_top_k(top_k)
    shape = tuple(int(n) for n in model.image_shape)
    names = class_names(model, 0)
    results: list[dict[str, Any] | None] = [None] * len(paths)
    pending: list[tuple[int, np.ndarray]] = []

    def run_batch() -> None:
        probs = batch_probabilities(model, np.stack([a for _, a in pending]), tta=tta,
                                    mirror=mirror)
        for (index, _), row in zip(pending, probs, strict=True):
            result = prediction(str(paths[index]), row, class_names(model, len(row)), top_k)
            label = (expected or {}).get(Path(paths[index]))
            if label is not None and label in names:
                result.update(expected=label, correct=result["label"] == label)
            results[index] = result
        pending.clear()

    for index, entry in enumerate(paths):
        try:
            pending.append((index, file_input(entry, model.preprocessing, shape, preprocess)))
        except TfcnnError as exc:
            results[index] = {"file": str(entry), "error": str(exc)}
        if len(pending) == BATCH_SIZE:
            run_batch()
    if pending:
        run_batch()
    return [r for r in results if r is not None]
