"""Fitting a trained model's calibration and its "unknown" rule, and storing them in it.

At the end of every run (`calibrate_model_file`, called by the training run):
- with a validation split, the temperature is fitted on the validation images (NLL,
  `tfcnn.evaluation.calibration.fit_temperature`) and the "unknown" threshold on them too;
- without one there is nothing held out to fit a temperature on (it stays 1), and the
  threshold is fitted on (up to `TRAIN_SAMPLE` of) the training images: the model is more
  sure of those than of new images, so it accepts somewhat fewer than `acceptance` of new
  in-distribution images (measured in docs/benchmarks.md, "Unknown inputs").
`tfcnn calibrate RUN [--dataset D]` (`calibrate_run`) does it afterwards: on the run's own
validation split when it had one, else on images of `--dataset` it did not train on.

The result goes into model.keras (its `calibration`, `tfcnn.models.calibration`),
rewritten atomically, so every face that loads the model answers with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_path
from tfcnn.evaluation.calibration import fit_ood_rule, fit_temperature
from tfcnn.evaluation.report import model_logits
from tfcnn.models.calibration import Calibration
from tfcnn.models.trained import TrainedModel

DEFAULT_SCORE = "energy"  # chosen by measurement: docs/benchmarks.md, "Unknown inputs"
DEFAULT_ACCEPTANCE = 0.95
TRAIN_SAMPLE = 10_000  # training images scored for the threshold: plenty for a 95% quantile


@dataclass(frozen=True)
class Fitted:
    """What was fitted, for the user: the calibration and the images it was fitted on."""

    calibration: Calibration
    images: int
    fitted_on: str  # "validation", "training", or a dataset's name

    def describe(self) -> str:
        rule = self.calibration.ood
        temperature = (f"temperature {self.calibration.temperature:g}"
                       if self.fitted_on != "training" else "no temperature (no held-out "
                       "images; train with --val-split to fit one)")
        unknown = (f"'unknown' above {rule.score} {rule.threshold:.4g} (accepts "
                   f"{100 * rule.acceptance:g}% of the {self.images:,} {self.fitted_on} "
                   "images)" if rule is not None else "no 'unknown' rule")
        return f"calibrated: {temperature}; {unknown}"


def fit_calibration(model: TrainedModel, images: Any, labels: np.ndarray | None,
                    fitted_on: str, *, fit_scale: bool, score: str = DEFAULT_SCORE,
                    acceptance: float = DEFAULT_ACCEPTANCE) -> Fitted:
    """Fit the temperature (when `fit_scale`; labels needed) and the "unknown" rule on
    uint8 `images` (or `ImageFiles`) the model has its answers for."""
    logits = model_logits(model, images)
    temperature = fit_temperature(logits, labels) if fit_scale else 1.0
    rule = fit_ood_rule(logits, score, acceptance, fitted_on)
    return Fitted(Calibration(temperature, rule), len(logits), fitted_on)


def store_calibration(model_file: Path, calibration: Calibration) -> None:
    """Rewrite `model_file` with `calibration` in its config (atomically)."""
    import keras

    from tfcnn.models import backbones, network  # noqa: F401  (registers the classes)

    saved = keras.saving.load_model(str(model_file), compile=False)  # as trained (precision)
    saved.calibration = calibration
    with atomic_path(model_file, suffix=".keras") as tmp:
        saved.save(tmp)


def _sample(images: Any, labels: np.ndarray, limit: int, seed: int) -> tuple[Any, np.ndarray]:
    if len(labels) <= limit:
        return images, labels
    chosen = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return images[chosen], labels[chosen]


def calibrate_model_file(model_file: Path, data: Any, seed: int) -> Fitted:
    """At the end of a run: fit on `data`'s validation images when it has them, else on a
    sample of its training images (see the module docstring); store; return what was fitted.
    `data`: the run's `FitData` (x_val/y_val may be None)."""
    model = TrainedModel.load(model_file)
    if data.y_val is not None and len(data.y_val):
        fitted = fit_calibration(model, data.x_val, data.y_val, "validation", fit_scale=True)
    else:
        images, labels = _sample(data.x_train, data.y_train, TRAIN_SAMPLE, seed)
        fitted = fit_calibration(model, images, labels, "training", fit_scale=False)
    store_calibration(model_file, fitted.calibration)
    return fitted


def calibrate_run(model: TrainedModel, dataset: str | None, data_dir: str | None = None,
                  acceptance: float = DEFAULT_ACCEPTANCE, score: str = DEFAULT_SCORE
                  ) -> Fitted:
    """`tfcnn calibrate`: fit on the run's own validation split (no `dataset`) or on
    `dataset`'s test images (a registered name) or whole folder (`folder:PATH`), which the
    model did not train on; store in its model.keras; return what was fitted."""
    from tfcnn.core.rundir import read_config
    from tfcnn.data.source import load_training_data
    from tfcnn.evaluation.report import run_dir_of, test_set_for

    run = run_dir_of(model.path) if model.path is not None else None
    if dataset is None:
        config = read_config(run) if run is not None else None
        if config is None or not config.val_split:
            raise ConfigError(f"{model.path}: the run trained on all its training images; "
                              "give --dataset with images it did not train on (e.g. "
                              "folder:PATH), or train with --val-split")
        data, _ = load_training_data(config.replace(data_dir=data_dir or config.data_dir))
        images, labels, where = data.x_val, data.y_val, "validation"
    else:
        test = test_set_for(model, dataset, data_dir, run)
        images, labels, where = test.images, test.labels, test.name
    fitted = fit_calibration(model, images, labels, where, fit_scale=True, score=score,
                             acceptance=acceptance)
    store_calibration(model.path, fitted.calibration)
    return fitted
