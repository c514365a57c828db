"""The audit's clock: `--time-budget` parsed, and epochs per fold planned to fit it.

The cross-training plans its folds' epochs together (one run's `--time-budget` plans only
itself, training/budget.py), from a measured throughput:

1. Fold 1 starts with the recipe's full `max_epochs`. Its first epoch is timed through the
   training loop's hooks: the set-up before it, the first training call (which traces the
   graph), and the steady time per step of the calls after it (`Watch`), plus the epoch's
   own saving.
2. If all folds fit the budget at `max_epochs`, training goes on. Otherwise fold 1 stops
   and starts again with the epochs that fit (`Planner.plan_after_first_epoch`): at least
   one epoch per fold, else the budget is too short and a `ConfigError` says how long one
   epoch of each fold takes here.
3. Each later fold is given the epochs that still fit with the figures measured so far, and
   a fold stops after an epoch when the next one would leave too little time for the others
   (another process slowing the machine down): the budget is never exceeded by more than
   the fixed cost of the last fold's end (writing its model, its held-out answers).

Pure Python: the clock is passed in (`now`), so the plan is tested without training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tfcnn.core.durations import describe_seconds, parse_duration
from tfcnn.core.errors import ConfigError

__all__ = ["DEFAULT_BUDGET", "FoldTiming", "Planner", "Watch", "describe_seconds",
           "parse_duration"]

DEFAULT_BUDGET = "3m"  # cross-training of 6,000 digits takes ~1 minute here at 12 epochs a fold


@dataclass
class Watch:
    """Times one fold through the loop's hooks (`tfcnn.training.hooks.Hooks`)."""

    clock: Callable[[], float] = time.perf_counter
    started: float = 0.0                 # train_run called
    first_epoch_at: float | None = None  # epoch 1 began
    calls: list[tuple[float, int]] = field(default_factory=list)  # (time, steps) per call
    train_started: float | None = None   # epoch 1's training calls began
    epoch_ended: float | None = None     # epoch 1's record came back

    def now(self) -> float:
        return self.clock()

    def timing(self) -> FoldTiming:
        """The first epoch's figures (see the module doc); call after its record."""
        assert self.first_epoch_at is not None and self.epoch_ended is not None
        setup = self.first_epoch_at - self.started
        begun = self.train_started if self.train_started is not None else self.first_epoch_at
        epoch_wall = self.epoch_ended - self.first_epoch_at
        if len(self.calls) < 2:  # one call per epoch: its time, tracing included
            return FoldTiming(setup, 0.0, epoch_wall)
        (t_first, n_first), (t_last, _) = self.calls[0], self.calls[-1]
        steps = sum(n for _, n in self.calls)
        per_step = (t_last - t_first) / (steps - n_first)
        trace = max(0.0, (t_first - begun) - n_first * per_step)
        saving = max(0.0, self.epoch_ended - t_last)
        return FoldTiming(setup, trace, steps * per_step + saving)


@dataclass(frozen=True)
class FoldTiming:
    """What a fold costs: set-up before its first epoch, the graph's tracing, an epoch."""

    setup_s: float
    trace_s: float
    epoch_s: float

    def fixed_s(self, finish_s: float) -> float:
        """The cost of a fold that does not depend on its epochs."""
        return self.setup_s + self.trace_s + finish_s


class Planner:
    """Epochs per fold within `budget_s` seconds of cross-training (None: `max_epochs`)."""

    def __init__(self, budget_s: float | None, folds: int, max_epochs: int,
                 started: float) -> None:
        self.budget_s, self.folds, self.max_epochs = budget_s, folds, max_epochs
        self.started = started
        self.timing: FoldTiming | None = None
        self.finish_s: float | None = None  # measured after fold 1 ends
        self.epochs = max_epochs

    def _left(self, now: float) -> float:
        assert self.budget_s is not None
        return self.budget_s - (now - self.started)

    def _finish(self) -> float:
        # Before fold 1 has ended, its end is guessed as its set-up plus one epoch: it loads
        # and saves the model, and runs the calibration and the held-out answers (with TTA)
        # over about twice the fold's images at a third of a training step's cost each.
        # Measured on 6,000 digits: guessed 0.67 s, took 0.55-0.88 s.
        assert self.timing is not None
        if self.finish_s is not None:
            return self.finish_s
        return self.timing.setup_s + self.timing.epoch_s

    def fits(self, folds: int, epochs: int, now: float) -> bool:
        """Whether `folds` whole folds of `epochs` epochs fit in the time left."""
        if self.budget_s is None or self.timing is None:
            return True
        cost = self.timing.fixed_s(self._finish()) + epochs * self.timing.epoch_s
        return folds * cost <= self._left(now)

    def epochs_that_fit(self, folds: int, now: float) -> int:
        """The most epochs (up to the current plan) for each of `folds` folds; 0: none."""
        if self.budget_s is None or self.timing is None:
            return self.epochs
        per_fold = self._left(now) / folds - self.timing.fixed_s(self._finish())
        return max(0, min(self.epochs, math.floor(per_fold / self.timing.epoch_s)))

    def plan_after_first_epoch(self, timing: FoldTiming, now: float) -> bool:
        """Fold 1's first epoch measured: True to go on, False to restart it with
        `self.epochs` epochs; `ConfigError` when not even one epoch per fold fits."""
        self.timing = timing
        if self.budget_s is None:
            return True
        rest_of_fold_1 = (self.max_epochs - 1) * timing.epoch_s + self._finish()
        if rest_of_fold_1 <= self._left(now) and \
                self.fits(self.folds - 1, self.max_epochs, now + rest_of_fold_1):
            return True
        self.epochs = self.epochs_that_fit(self.folds, now)
        if self.epochs < 1:
            raise ConfigError(self._too_short(timing))
        return False

    def _too_short(self, timing: FoldTiming) -> str:
        assert self.budget_s is not None
        one = timing.fixed_s(self._finish()) + timing.epoch_s
        return (f"--time-budget {describe_seconds(self.budget_s)}: too short for "
                f"{self.folds} folds of this dataset (one epoch of each takes about "
                f"{one:.0f} s here); give at least "
                f"{describe_seconds(math.ceil(self.folds * one * 1.2))}, or fewer --folds")

    def fold_done(self, timing: FoldTiming, finish_s: float) -> None:
        """A fold ended: its figures replace the estimates (the machine may have slowed)."""
        self.timing = FoldTiming(timing.setup_s, timing.trace_s, max(timing.epoch_s, 1e-6))
        self.finish_s = finish_s

    def stop_after(self, epoch: int, planned: int, folds_after: int, now: float) -> bool:
        """After `epoch` of a fold planned for `planned`: stop it when one more epoch, its
        end and one epoch of each later fold would not fit."""
        if self.budget_s is None or self.timing is None or epoch >= planned:
            return False
        fixed = self.timing.fixed_s(self._finish())
        needed = (self.timing.epoch_s + self._finish()
                  + folds_after * (fixed + self.timing.epoch_s))
        return needed > self._left(now)
