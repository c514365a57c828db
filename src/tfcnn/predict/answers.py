"""Predictions for prepared images: `Prediction`s for any input, result dicts for files.

`predict_inputs` serves `Classifier.predict` (any input; the first bad one raises);
`predict_files` serves `tfcnn predict` (files; a file that cannot be read becomes an error
entry, never a failed run). Both prepare images with `tfcnn.predict.inputs` and get
probabilities from the model's one inference path, `TrainedModel.predict_proba`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.core.prediction import Prediction
from tfcnn.models.trained import BATCH_SIZE, TrainedModel
from tfcnn.predict.inputs import file_input, model_inputs


def prediction(file: str, probs: Any, names: list[str], top_k: int,
               unknown: bool = False) -> dict[str, Any]:
    """The `predict --json` object for one image's class probabilities (`Prediction`)."""
    return Prediction.from_probabilities(probs, names, top_k, source=file,
                                         unknown=unknown).to_dict()


def check_top_k(top_k: Any) -> None:
    """`top_k` must be a positive integer (`ConfigError` otherwise)."""
    if not isinstance(top_k, int | np.integer) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"top_k: expected a positive integer, got {top_k!r}")


def predict_inputs(model: TrainedModel, inputs: Any, *, top_k: int = 3, tta: bool = False,
                   preprocess: bool = True) -> list[Prediction]:
    """One `Prediction` per image of `inputs` (see `model_inputs`), in order."""
    check_top_k(top_k)
    batch, sources = model_inputs(inputs, model.prepare, model.image_shape, preprocess)
    answers = model.answer(batch, tta=tta)
    return [Prediction.from_probabilities(row, model.class_names, top_k, source, unknown)
            for row, source, unknown in zip(answers.probabilities, sources, answers.unknown,
                                            strict=True)]


def predict_files(model: TrainedModel, paths: list[str | Path], *, top_k: int = 3,
                  preprocess: bool = True, tta: bool = False,
                  expected: dict[Path, str] | None = None) -> list[dict[str, Any]]:
    """One result per path, in order: the prediction (`Prediction.to_dict()`), or
    `{"file", "error"}` for a file that gives no image.

    `expected`: a class name per file (its class folder); when it is one of the model's
    classes the result adds "expected" and "correct". Images are prepared as the model
    was trained (`preprocess=False`: resize only) and run in batches of `BATCH_SIZE`.
    """
    check_top_k(top_k)
    names = model.class_names
    results: list[dict[str, Any] | None] = [None] * len(paths)
    pending: list[tuple[int, np.ndarray]] = []

    def run_batch() -> None:
        answers = model.answer(np.stack([a for _, a in pending]), tta=tta)
        for (index, _), row, unknown in zip(pending, answers.probabilities, answers.unknown,
                                            strict=True):
            result = prediction(str(paths[index]), row, names, top_k, bool(unknown))
            label = (expected or {}).get(Path(paths[index]))
            if label is not None and label in names:
                result.update(expected=label, correct=result["label"] == label)
            results[index] = result
        pending.clear()

    for index, entry in enumerate(paths):
        try:
            pending.append((index, file_input(entry, model.prepare, model.image_shape,
                                              preprocess)))
        except TfcnnError as exc:
            results[index] = {"file": str(entry), "error": str(exc)}
        if len(pending) == BATCH_SIZE:
            run_batch()
    if pending:
        run_batch()
    return [r for r in results if r is not None]
