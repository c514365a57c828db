"""One `tfcnn tune` search on its folder: the seed and settings it keeps (DIR/search.json),
the Keras Tuner it runs, and the trials read back from the oracle and the run directories.

Imports TensorFlow and Keras Tuner (steer/tuner.py); `tfcnn.steer.tune` imports this
module only once it has checked that Keras Tuner is installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcnn.api.training import training_config
from tfcnn.core.config import TrainConfig
from tfcnn.core.durations import describe_seconds
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.fsutil import atomic_write_json
from tfcnn.core.rundir import RunDir, read_config
from tfcnn.core.spelling import caller
from tfcnn.data.source import class_names_of
from tfcnn.steer.command import reproducing_command
from tfcnn.steer.space import Space, rounded
from tfcnn.steer.tune import Trial, TuneResult, finite_or_none, new_seed
from tfcnn.steer.tuner import (
    HYPERBAND_EPOCHS,
    Clock,
    OutOfTime,
    TrialTuner,
    is_worker,
    make_oracle,
    trial_dir,
    trial_metrics,
    trial_summary,
)

# Settings that may differ between runs of one search (they do not change what a trial is).
_FREE = ("out", "time_budget", "data_dir", "steps_per_call", "cache")


def _kept_settings(base: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in base.to_dict().items() if k not in _FREE}


def _settled_seed(out: Path, base: TrainConfig, method: str) -> int:
    """The search's seed: the one given, else the one DIR/search.json kept, else a new one;
    a folder holding another search (other settings or method) is refused."""
    path = out / "search.json"
    kept = _kept_settings(base)
    if not path.is_file():
        seed = base.seed if base.seed is not None else new_seed()
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"method": method, "seed": seed,
                                 "settings": {**kept, "seed": seed}})
        return seed
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        seed = int(saved["seed"])
        settings, saved_method = dict(saved["settings"]), saved["method"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: not a tfcnn search record ({exc})") from None
    if saved_method != method:
        raise ConfigError(f"{out}: holds a {saved_method} search; continue it with "
                          f"{caller()('method')} {saved_method}, or choose another folder")
    wanted = {**kept, "seed": base.seed if base.seed is not None else seed}
    if differ := sorted(k for k in {*settings, *wanted} if settings.get(k) != wanted.get(k)):
        named = ", ".join(map(caller(), differ))
        raise ConfigError(f"{out}: holds a search with other settings ({named} "
                          f"differ, see {path}); continue it with the same settings, or "
                          "choose another folder")
    return seed


@dataclass
class Search:
    """A prepared search: its tuner, and what its trials are built from."""

    out: Path
    method: str
    tuner: TrialTuner
    clock: Clock

    @classmethod
    def prepare(cls, base: TrainConfig, given: dict[str, Any] | None, out: Path, method: str,
                max_trials: int, budget_s: float,
                on_trial: Callable[[str], None] | None = None) -> Search:
        """Check the folder, settle the seed and build the tuner (its state in DIR/tuner)."""
        seed = _settled_seed(out, base, method)
        space = Space.around(base, len(class_names_of(base)))
        asked_epochs = base.epochs if given is None else given.get("epochs")

        def make_config(changes: dict[str, Any], seconds: float, epochs: int | None
                        ) -> TrainConfig:
            extra = {**changes, "time_budget": seconds, "seed": seed}
            if epochs is not None:  # Hyperband's epochs for this trial
                extra["epochs"] = int(epochs)
            if given is None:
                return base.replace(**extra)
            return training_config({**given, **extra})

        oracle = make_oracle(method, space, max_trials, seed,
                             asked_epochs or HYPERBAND_EPOCHS)
        clock = Clock(budget_s, max_trials)
        tuner = TrialTuner(oracle, space=space, make_config=make_config, out=out, clock=clock,
                           on_trial=on_trial, directory=str(out), project_name="tuner",
                           overwrite=False)
        return cls(out, method, tuner, clock)

    def run(self) -> str | None:
        """Search until max_trials or the budget; why it stopped early, or None."""
        try:
            self.tuner.search(verbose=0)
        except OutOfTime:
            return (f"the {describe_seconds(self.clock.budget_s)} budget ran out; run the "
                    "search again to continue it")
        return None

    def result(self, stopped: str | None) -> TuneResult:
        """Every trial as the oracle knows it (a worker: the trials it trained)."""
        oracle = self.tuner.oracle
        if is_worker():  # its oracle client lists no trials
            ids = sorted(self.tuner.ran, key=int)
            trials = [self._trial(i, None, self.tuner.ran[i]) for i in ids]
            done = [t for t in trials if t.score is not None]
            chosen = min(done, key=lambda t: t.score or 0.0) if done else None
            return TuneResult(self.out, self.method, tuple(trials), chosen, stopped)
        ids = sorted(oracle.trials, key=int)
        trials = [self._trial(i, str(oracle.trials[i].status),
                              oracle.trials[i].hyperparameters.values) for i in ids]
        best = oracle.get_best_trials(1)
        number = int(best[0].trial_id) + 1 if best else None
        chosen = next((t for t in trials if t.number == number), None)
        return TuneResult(self.out, self.method, tuple(trials), chosen, stopped)

    def _trial(self, trial_id: str, status: str | None, values: dict[str, Any]) -> Trial:
        """A trial's record; `status` None: told by its score (a worker's trials)."""
        path = trial_dir(self.out, trial_id)
        metrics = trial_metrics(path) if RunDir(path).metrics_json.is_file() else {}
        summary = trial_summary(path)
        if status is None:
            status = "COMPLETED" if math.isfinite(_score(metrics)) else "FAILED"
        shown = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        if "lr" in shown:  # as trained (steer/space.py rounds it)
            shown["lr"] = rounded(float(shown["lr"]))
        if "tuner/epochs" in values:
            shown["hyperband_epochs"] = values["tuner/epochs"]
        command = None
        if RunDir(path).config.is_file() and status == "COMPLETED":
            command = reproducing_command(read_config(RunDir(path)).replace(time_budget=None))
        return Trial(int(trial_id) + 1, status, shown,
                     finite_or_none(metrics.get("val_loss")),
                     finite_or_none(metrics.get("val_accuracy")), path, summary["epochs"],
                     summary["train_seconds"], command)


def _score(metrics: dict[str, float]) -> float:
    value = metrics.get("val_loss", math.nan)
    return value if math.isfinite(value) else math.inf
