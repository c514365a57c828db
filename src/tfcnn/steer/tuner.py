"""Keras Tuner's side of `tfcnn tune`: the oracle, and a `keras_tuner.Tuner` whose trials are
tfcnn run directories.

Keras Tuner's documented custom-loop path: `TrialTuner` overrides `run_trial`, which
trains one run through tfcnn's own training (the same code as `tfcnn train`) and returns
its validation metrics; the oracle (Bayesian optimisation or Hyperband) picks the next
values. Keras Tuner turns any exception in a trial into a failed trial and searches on; a
tfcnn error (bad settings, an interrupted run) should end the search with its message, so
it is kept and re-raised by `search` (`keras_tuner.errors.FatalError` stops the loop).
A trial whose validation loss is not finite (the learning rate diverged) is failed, not
fatal. TensorFlow and Keras Tuner are imported by whoever imports this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner

from tfcnn.api.starting import start_training
from tfcnn.api.training import training_config
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.core.rundir import RunDir, RunFinished, read_epoch_records, read_metrics
from tfcnn.core.spelling import caller
from tfcnn.steer.space import Space, rounded
from tfcnn.training.hooks import Hooks

OBJECTIVE = "val_loss"
# Hyperband's most epochs for a trial when --epochs is not given (3 rounds of factor 3).
HYPERBAND_EPOCHS = 9
HYPERBAND_FACTOR = 3
# No trial starts with less than this left of the budget: set-up alone takes longer.
MIN_TRIAL_SECONDS = 3.0


class OutOfTime(Exception):
    """The search's time budget has no room for another trial."""


def is_worker() -> bool:
    """A worker of a distributed search (Keras Tuner's KERASTUNER_* variables, not the chief)."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", ""))


def trial_dir(out: Path, trial_id: str) -> Path:
    """DIR/trial-001 for Keras Tuner's trial "0"."""
    return out / f"trial-{int(trial_id) + 1:03d}"


def make_oracle(method: str, space: Space, max_trials: int, seed: int,
                max_epochs: int) -> Any:
    """The Bayesian optimisation or Hyperband oracle over `space`, minimising val_loss."""
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    hp = space.declare(keras_tuner.HyperParameters())
    # Diverged trials fail; they must not end the search (Keras Tuner stops after 3).
    settings = {"objective": objective, "hyperparameters": hp, "seed": seed,
                "max_consecutive_failed_trials": max_trials + 1}
    if method == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(
            max_epochs=max(2, max_epochs), factor=HYPERBAND_FACTOR, **settings)
        oracle.max_trials = max_trials  # Hyperband counts brackets, not trials
        return oracle
    return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=max_trials, **settings)


@dataclass
class Clock:
    """The search's budget: each trial gets what is left shared by the trials left. It
    starts with the first trial (loading TensorFlow and Keras Tuner is not the search's)."""

    budget_s: float
    max_trials: int
    started: float | None = None

    def share(self, trials_begun: int | None) -> float:
        """Seconds for the next trial; `trials_begun` None: unknown (a worker), an equal share."""
        if self.started is None:
            self.started = time.perf_counter()
        left = self.budget_s - (time.perf_counter() - self.started)
        if left < MIN_TRIAL_SECONDS:
            raise OutOfTime
        if trials_begun is None:
            return min(left, self.budget_s / self.max_trials)
        return left / max(1, self.max_trials - trials_begun)


# Settings to train one trial: (the space's changes, its seconds, Hyperband's epochs or None).
TrialConfig = Callable[[dict[str, Any], float, int | None], TrainConfig]


class TrialTuner(keras_tuner.Tuner):
    """A Keras Tuner whose trials train tfcnn run directories under `out`."""

    def __init__(self, oracle: Any, *, space: Space, make_config: TrialConfig, out: Path,
                 clock: Clock, on_trial: Callable[[str], None] | None = None,
                 **kwargs: Any) -> None:
        self.space, self.make_config, self.out, self.clock = space, make_config, out, clock
        self.on_trial = on_trial
        self.error: TfcnnError | None = None
        self.ran: dict[str, dict[str, Any]] = {}  # trial id: values, of the trials run here
        self._share = 0.0
        super().__init__(oracle, **kwargs)

    def pre_create_trial(self) -> None:
        trials = getattr(self.oracle, "trials", None)  # a worker's oracle client has none
        self._share = self.clock.share(None if trials is None else len(trials))

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Train the trial's run directory; its lowest validation loss and that epoch's
        validation accuracy."""
        values = trial.hyperparameters.values
        path = trial_dir(self.out, trial.trial_id)
        self.ran[trial.trial_id] = dict(values)
        try:
            config = self.make_config(self.space.changes(values), self._share,
                                      values.get("tuner/epochs"))
            if self.on_trial:
                self.on_trial(f"trial {int(trial.trial_id) + 1}: {describe_values(values)} "
                              f"({self._share:.0f} s) -> {path}")
            train_trial(config, path)
        except ConfigError as exc:  # e.g. the share too short for one epoch
            self.error = ConfigError(f"trial {int(trial.trial_id) + 1}, given "
                                     f"{self._share:.0f} s of the search's budget: {exc}")
            raise keras_tuner.errors.FatalError(str(exc)) from exc
        except TfcnnError as exc:
            self.error = exc
            raise keras_tuner.errors.FatalError(str(exc)) from exc
        metrics = trial_metrics(path)
        if not math.isfinite(metrics.get(OBJECTIVE, math.nan)):
            raise keras_tuner.errors.FailedTrialError(
                f"{path}: no finite validation loss (the learning rate diverged?)")
        return metrics

    def search(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().search(*args, **kwargs)
        except keras_tuner.errors.FatalError:
            if self.error is not None:
                raise self.error from None
            raise


def describe_values(values: dict[str, Any]) -> str:
    """"lr 0.0021, weight decay 0.001, width 1.5, augment 0.5" (Hyperband's own left out)."""
    words = {"lr": "lr", "weight_decay": "weight decay", "width": "width",
             "augment": "augment"}
    shown = {**values, "lr": rounded(float(values["lr"]))} if "lr" in values else values
    return ", ".join(f"{words[name]} {shown[name]:g}" for name in words if name in shown)


def train_trial(config: TrainConfig, path: Path) -> None:
    """Train `config` into `path`, or continue the run there (a search run again after a
    stop); a finished run is left as it is."""
    hooks, name = Hooks(), caller()  # quiet: the search reports per trial
    if not RunDir(path).config.is_file():
        start_training(config.replace(out=str(path)), hooks=hooks, name=name)
        return
    with contextlib.suppress(RunFinished):  # trained to its end already
        start_training(training_config({}, resume=path, name=name), resume=path, hooks=hooks,
                       name=name)


def trial_metrics(path: Path) -> dict[str, float]:
    """{"val_loss": lowest over the epochs, "val_accuracy": at that epoch} (NaN if none)."""
    records = [r for r in read_epoch_records(RunDir(path)) if r.get("val_loss") is not None]
    finite = [r for r in records if math.isfinite(r["val_loss"])]
    if not finite:
        return {OBJECTIVE: math.nan, "val_accuracy": math.nan}
    best = min(finite, key=lambda r: r["val_loss"])
    return {OBJECTIVE: float(best["val_loss"]), "val_accuracy": float(best["val_accuracy"])}


def trial_summary(path: Path) -> dict[str, Any]:
    """What results.json says of a trial's run besides its score: epochs, seconds, test."""
    metrics = read_metrics(RunDir(path))
    return {"epochs": len(metrics.get("epochs", [])),
            "train_seconds": metrics.get("train_seconds"),
            "test_accuracy": metrics.get("test_accuracy")}
