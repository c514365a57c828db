"""`tfcnn.tune`: a Keras Tuner search over learning rate, weight decay, width and
augmentation strength, each trial a tfcnn run directory scored on a validation split.

    DIR/search.json    the search's settings and seed (a re-run must match them)
    DIR/tuner/         Keras Tuner's own state: running the search again continues it
    DIR/trial-001/ ..  one run directory per trial (tfcnn evaluate, export, ... work on it)
    DIR/results.json   every trial's values, score and run; the best; its command

The whole search keeps to `time_budget`: each trial trains with what is left shared by the
trials left as its own time budget (training/budget.py plans its epochs), on the same
seed, so trials differ only in the values searched. The score is a trial's lowest
validation loss over its epochs (`val_split`, 0.1 when not given). The best trial's
`command` is the `tfcnn train ...` line that trains it again: the same settings, seed and
planned epochs, without the budget. The space is steer/space.py's; Keras Tuner's side is
steer/tuner.py's. Distributed search (Keras Tuner's chief and workers, through
KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT) is docs/steering.md's.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO

from tfcnn.core.config import TrainConfig
from tfcnn.core.durations import parse_duration
from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_write_json
from tfcnn.core.spelling import caller

METHODS = ("bayesian", "hyperband")
DEFAULT_VAL_SPLIT = 0.1
MISSING = 'tune needs Keras Tuner: pip install "tfcnn[tune]"'


@dataclass(frozen=True)
class Trial:
    """One trial: its values, its score (lowest validation loss; None if it failed), its run."""

    number: int
    status: str                      # Keras Tuner's: COMPLETED, FAILED, RUNNING, ...
    hyperparameters: dict[str, Any]
    score: float | None
    val_accuracy: float | None
    run: Path
    epochs: int
    train_seconds: float | None
    command: str | None              # the tfcnn train line that trains it again

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.number, "status": self.status,
                "hyperparameters": self.hyperparameters, "score": self.score,
                "val_loss": self.score, "val_accuracy": self.val_accuracy,
                "run": str(self.run), "epochs": self.epochs,
                "train_seconds": self.train_seconds, "command": self.command}


@dataclass(frozen=True)
class TuneResult:
    """A search's trials (in the order they started), the best one and its command."""

    out: Path
    method: str
    trials: tuple[Trial, ...]
    best: Trial | None
    stopped: str | None = None  # why the search ended before max_trials, if it did

    @property
    def command(self) -> str | None:
        """`tfcnn train ...` that trains the best trial again (None: no trial finished)."""
        return self.best.command if self.best else None

    def to_json(self) -> dict[str, Any]:
        """results.json's object."""
        return {"out": str(self.out), "method": self.method,
                "objective": "val_loss (lowest over a trial's epochs; lower is better)",
                "trials": [t.to_json() for t in self.trials],
                "best": self.best.to_json() if self.best else None,
                "command": self.command, "stopped": self.stopped}

    def table(self) -> str:
        """The trials as a text table, the best marked with *."""
        rows = [("trial", "lr", "w.decay", "width", "augment", "val loss", "val acc",
                 "epochs", "status")]
        for t in self.trials:
            hp = t.hyperparameters
            rows.append((f"{t.number}{'*' if t is self.best else ''}",
                         *(f"{hp[k]:g}" if k in hp else "-"
                           for k in ("lr", "weight_decay", "width", "augment")),
                         "-" if t.score is None else f"{t.score:.4f}",
                         "-" if t.val_accuracy is None else f"{100 * t.val_accuracy:.2f}%",
                         str(t.epochs), t.status.lower()))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                         .rstrip() for row in rows)


def tune(config: TrainConfig | Mapping[str, Any] | None = None, *, max_trials: int,
         time_budget: str | float, out: str | os.PathLike[str], method: str = "bayesian",
         progress: Callable[[str], None] | None = None, **settings: Any) -> TuneResult:
    """Search hyperparameters with Keras Tuner; each trial is a run directory under `out`.

    `config` (a `TrainConfig` or a dict of settings) and the keyword `settings` (any
    `TrainConfig` field but `out`) describe the run to tune around; `max_trials`: how many
    trials; `time_budget`: the whole search's time (`"20m"`, `90`, ...), shared among the
    trials as each one's own time budget; `method`: "bayesian" (Gaussian-process Bayesian
    optimisation) or "hyperband"; `progress`: called with a line as each trial starts.
    Running it again on the same `out` continues the search (more trials with a higher
    `max_trials`). Writes `out`/results.json; needs `pip install "tfcnn[tune]"`.

    Example:
        >>> result = tfcnn.tune(model="8C3-P2-D10", limit_train=500, limit_test=200,
        ...                     val_split=0.02, epochs=2, seed=1, data_dir=data_dir,
        ...                     max_trials=2, time_budget="40s", out=tmp / "search")
        >>> len(result.trials), result.command.startswith("tfcnn train")
        (2, True)
    """
    name = caller()
    if find_spec("keras_tuner") is None:
        raise ConfigError(MISSING)
    budget = _checked_search(max_trials, time_budget, method, name)
    out_path = Path(out).absolute()
    base, given = _base_config(config, settings, name)
    from tfcnn.core.tfenv import import_tensorflow

    import_tensorflow()  # its start-up chatter hidden, as for train
    from tfcnn.steer.search import Search
    from tfcnn.steer.tuner import is_worker

    told = _told(progress, sys.stdout)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Keras Tuner prints, and calls threading names deprecated in Python 3.10.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="keras_tuner")
        search = Search.prepare(base, given, out_path, method, max_trials, budget,
                                on_trial=told)
        stopped = None
        try:
            stopped = search.run()
        finally:  # a trial's error ends the search: the trials before it are still written
            result = search.result(stopped)
            if not is_worker():  # the chief (or a lone search) has every trial
                atomic_write_json(out_path / "results.json", result.to_json())
    return result


def _told(progress: Callable[[str], None] | None, stdout: TextIO
          ) -> Callable[[str], None] | None:
    """`progress`, called with the standard output it had (not the silenced one)."""
    if progress is None:
        return None

    def told(line: str) -> None:
        with contextlib.redirect_stdout(stdout):
            progress(line)
    return told


def _checked_search(max_trials: Any, time_budget: Any, method: Any,
                    name: Callable[[str], str]) -> float:
    """The budget in seconds, after checking the search's own settings."""
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"{name('max_trials')}: expected a positive integer, got "
                          f"{max_trials!r}")
    if method not in METHODS:
        raise ConfigError(f"{name('method')}: expected one of {', '.join(METHODS)}, got "
                          f"{method!r}")
    seconds = parse_duration(time_budget, name("time_budget"))
    if seconds is None:
        raise ConfigError(f"{name('time_budget')} {time_budget!r}: the search needs a "
                          "budget, such as 20m")
    return seconds


def _base_config(config: TrainConfig | Mapping[str, Any] | None,
                 settings: dict[str, Any], name: Callable[[str], str]
                 ) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run to tune around, validated; and the settings given (None for a TrainConfig),
    from which each trial's config is built as `tfcnn train` builds it."""
    from tfcnn.api.training import check_settings, training_config

    if isinstance(config, TrainConfig):
        if settings:
            config = config.replace(**settings)
        if config.val_split is None:
            config = config.replace(val_split=DEFAULT_VAL_SPLIT)
        check_settings(config, name=name)
        return config, None
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"config: expected a TrainConfig or a dict of settings, got "
                          f"{type(config).__name__}")
    given = {k: v for k, v in {**(config or {}), **settings}.items() if v is not None}
    if "out" in given:
        raise ConfigError(f"{name('out')}: the search's folder holds the trials' runs "
                          "(trial-001, ...); give no run directory")
    given.setdefault("val_split", DEFAULT_VAL_SPLIT)
    given.pop("time_budget", None)  # each trial gets its share of the search's
    base = training_config(given, name=name)
    check_settings(base, name=name)
    return base, given


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: a missing or non-finite metric is None."""
    return value if value is not None and math.isfinite(value) else None


def new_seed() -> int:
    return secrets.randbelow(2**31)
