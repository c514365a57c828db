"""`--time-budget`: a run planned in seconds, from the speed measured on its own machine.

A recipe counted in epochs promises a time it keeps on one CPU only (the photo preset's 40
epochs took 14 minutes on a Xeon with AMX-BF16 and about 30 on an AVX2-only EPYC). With a
budget, the run first measures itself (`measure_speed`): the training step, traced and then
timed over a few calls, a test batch and a save of the model, on the model and data it is
about to train. The weights are then put back as they were, and `plan` picks the most
epochs (up to `--epochs`, when given) whose training, per-epoch tests and saves, batch-norm
recomputation, final test and calibration fit in what is left of the budget. The run then
trains exactly as `--epochs N` with the planned N would (config.json records N), so its
learning-rate schedule (one-cycle, cosine) ends where the budget does, and a resumed run
follows the same plan.

While it trains, `BudgetGuard` stops it after an epoch when the next would overrun (the
machine slowed down, say under another process's load), and says so. Figures, planned and
actual, go into metrics.json under "budget".
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfcnn.core.durations import describe_seconds
from tfcnn.core.errors import ConfigError
from tfcnn.data import pipeline
from tfcnn.training import batchnorm
from tfcnn.training.feeds import Feeds, FitData
from tfcnn.training.steps import Steps

# The training calls timed after the first (tracing) one: at least this many seconds of
# steps, and at least two calls, but no more than 2% of the budget (timed steps train a
# model whose weights are put back, so they are spent). On the tutorial network two calls of
# 50 steps time its step to within 3% of an epoch's average.
PROBE_SECONDS = 1.5
PROBE_SHARE = 0.02
# Planned time left unused, for the noise of a shared machine.
MARGIN_SHARE = 0.03
# Images the end-of-run calibration scores without a validation split
# (training/calibrate.py's TRAIN_SAMPLE).
CALIBRATION_SAMPLE = 10_000


@dataclass(frozen=True)
class Speed:
    """What the run costs here, measured (`measure_speed`)."""

    trace_s: float       # tracing the training step (paid again by the run's own steps)
    step_s: float        # one training step, steady
    image_s: float       # one held-out image through the network (test, calibration)
    test_trace_s: float  # tracing the test step
    save_s: float        # writing model.keras once
    probe_s: float       # the whole measurement


@dataclass(frozen=True)
class Plan:
    """Epochs planned for a budget, and the figures they were planned from."""

    budget_s: float
    epochs: int
    epoch_s: float         # an epoch: its steps, its test or validation, its saves
    fixed_s: float         # what does not grow with epochs: tracing, final test, calibration
    spent_s: float         # before training: data, model, the measurement
    images_per_second: float
    capped: bool           # --epochs was reached before the budget

    @property
    def planned_s(self) -> float:
        return self.spent_s + self.fixed_s + self.epochs * self.epoch_s

    def describe(self) -> str:
        """"22 epochs planned for the 15 min budget (118 images/s measured here)"."""
        epochs = f"{self.epochs} epoch" + ("" if self.epochs == 1 else "s")
        why = " (the --epochs limit)" if self.capped else ""
        return (f"{epochs}{why} planned for the {describe_seconds(self.budget_s)} budget "
                f"({self.images_per_second:,.0f} images/s measured here)")

    def record(self) -> dict[str, Any]:
        """metrics.json's "budget" (planned figures; `actual_seconds` is added at the end)."""
        return {"seconds": round(self.budget_s, 3), "planned_epochs": self.epochs,
                "planned_seconds": round(self.planned_s, 3),
                "epoch_seconds": round(self.epoch_s, 3), "fixed_seconds": round(self.fixed_s, 3),
                "setup_seconds": round(self.spent_s, 3),
                "measured_images_per_second": round(self.images_per_second, 1)}


def _probe_batches(feeds: Feeds, batch_size: int, seed: int) -> Any:
    """Epoch 1's training batches, repeated (a tiny dataset's epoch is shorter than the
    probe), placed as the run's are."""
    batches = pipeline.train_batches(feeds.train_examples, batch_size, feeds.shuffle_buffer,
                                     seed, 1, 0)
    return iter(feeds.feed(batches.repeat()))


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _time_steps(steps: Steps, batches: Any, per_call: int, budget_s: float) -> tuple[float, float]:
    """(tracing seconds, seconds per steady step) of the training step."""
    def call() -> None:
        steps.train(batches, tf.constant(per_call, dtype=tf.int64))

    first = _timed(call)
    limit = min(max(PROBE_SECONDS, 0.0), PROBE_SHARE * budget_s)
    calls, spent = 0, 0.0
    while calls < 2 or spent < limit:
        spent += _timed(call)
        calls += 1
        if spent > 4 * limit:  # a slow network: two calls are enough
            break
    step_s = spent / (calls * per_call)
    return max(0.0, first - per_call * step_s), step_s


def _time_test(steps: Steps, feeds: Feeds) -> tuple[float, float]:
    """(tracing seconds, seconds per image) of the test step, on up to two batches."""
    held_out = feeds.val if feeds.val is not None else feeds.test
    if held_out is None:
        return 0.0, 0.0
    times: list[tuple[float, int]] = []
    for images, labels in held_out:
        began = time.perf_counter()
        steps.test(images, labels)
        times.append((time.perf_counter() - began, int(labels.shape[0] or 1)))
        if len(times) == 2:
            break
    for metric in steps.test_metrics:
        metric.reset_state()
    seconds, count = times[-1]
    trace = times[0][0] - times[0][1] * seconds / count if len(times) == 2 else 0.0
    return max(0.0, trace), seconds / count


def _time_save(model: keras.Model) -> float:
    with tempfile.TemporaryDirectory() as folder:
        return _timed(lambda: model.save(Path(folder) / "probe.keras"))


def measure_speed(model: keras.Model, steps: Steps, feeds: Feeds, batch_size: int,
                  seed: int, steps_per_call: int, budget_s: float) -> Speed:
    """Time the run's training step, test step and save on its own model and data, then put
    the model's weights back (the steps' optimizer has moved on: build new steps to train)."""
    started = time.perf_counter()
    # Every variable, the dropout layers' seed states too: the run then starts as it would
    # have without the measurement.
    values = [v.numpy() for v in model.variables]
    per_call = max(1, min(steps_per_call, feeds.steps_per_epoch))
    trace_s, step_s = _time_steps(steps, _probe_batches(feeds, batch_size, seed), per_call,
                                  budget_s)
    for variable, value in zip(model.variables, values, strict=True):
        variable.assign(value)
    if feeds.distributed:  # a test step of replicas' batches: about a third of a step
        test_trace_s, image_s = 0.0, step_s / (3 * batch_size)
    else:
        test_trace_s, image_s = _time_test(steps, feeds)
    save_s = _time_save(model)
    return Speed(trace_s, step_s, image_s, test_trace_s, save_s,
                 time.perf_counter() - started)


def _held_out_counts(data: FitData, tests_every_epoch: bool) -> tuple[int, int]:
    """(images judged after each epoch, images scored once at the end)."""
    val = 0 if data.y_val is None else len(data.y_val)
    test = len(data.y_test)
    calibration = val or min(CALIBRATION_SAMPLE, len(data.y_train))
    if val:
        return val, test + calibration
    return (test if tests_every_epoch else 0), test + calibration


def plan_for(speed: Speed, budget_s: float, spent_s: float, data: FitData,
             steps_per_epoch: int, max_epochs: int | None, tests_every_epoch: bool,
             has_batch_norm: bool) -> Plan:
    """`plan`, counting the batch-norm recomputation when the planned run is short enough
    to need it (batchnorm.py)."""
    planned = plan(speed, budget_s, spent_s, data, steps_per_epoch, max_epochs,
                   tests_every_epoch, batch_norm=False)
    if has_batch_norm and planned.epochs * steps_per_epoch < batchnorm.settled_steps():
        planned = plan(speed, budget_s, spent_s, data, steps_per_epoch, max_epochs,
                       tests_every_epoch, batch_norm=True)
    return planned


def plan(speed: Speed, budget_s: float, spent_s: float, data: FitData, steps_per_epoch: int,
         max_epochs: int | None, tests_every_epoch: bool, batch_norm: bool) -> Plan:
    """The most epochs that fit in `budget_s` with the measured `speed` (see the module
    doc); `spent_s`: seconds of the budget gone before training. At least one epoch; a
    `ConfigError` when not even that fits."""
    per_epoch_images, end_images = _held_out_counts(data, tests_every_epoch)
    # Each epoch writes model.keras and a checkpoint of about its size.
    epoch_s = steps_per_epoch * speed.step_s + per_epoch_images * speed.image_s + 2 * speed.save_s
    # The run's own steps trace again; calibration loads, traces, scores and saves once.
    fixed_s = (speed.trace_s + speed.test_trace_s + end_images * speed.image_s
               + 3 * speed.save_s + speed.test_trace_s)
    if batch_norm:  # a short run recomputes batch-norm statistics after each epoch
        epoch_s += min(batchnorm.RECOMPUTE_IMAGES, len(data.y_train)) * speed.image_s
    left = budget_s * (1 - MARGIN_SHARE) - spent_s - fixed_s
    fit = math.floor(left / epoch_s) if epoch_s > 0 else max_epochs or 1
    if fit < 1:
        need = spent_s + fixed_s + epoch_s
        raise ConfigError(f"--time-budget {describe_seconds(budget_s)}: too short for one "
                          f"epoch here (about {describe_seconds(math.ceil(need))} with the "
                          "set-up and the final test); give a longer budget or use fewer "
                          "images (--limit-train)")
    epochs = fit if max_epochs is None else min(fit, max_epochs)
    images = 1 / speed.step_s if speed.step_s > 0 else 0.0
    return Plan(budget_s, epochs, epoch_s, fixed_s, spent_s,
                images * _batch_of(data, steps_per_epoch), capped=epochs < fit)


def _batch_of(data: FitData, steps_per_epoch: int) -> float:
    """Images per training step, on average over an epoch."""
    return len(data.y_train) / max(1, steps_per_epoch)


@dataclass
class BudgetGuard:
    """Stops a planned run after an epoch when the next one and the run's end would overrun
    the budget (`reason` says why); `started`: when the budget's clock began."""

    plan: Plan
    started: float
    clock: Callable[[], float] = time.perf_counter

    def reason(self, records: list[dict[str, Any]], planned_epochs: int) -> str | None:
        if not records or records[-1]["epoch"] >= planned_epochs:
            return None
        last = max(float(records[-1].get("seconds") or 0.0), self.plan.epoch_s)
        elapsed = self.clock() - self.started
        if elapsed + last + self.plan.fixed_s <= self.plan.budget_s:
            return None
        done = records[-1]["epoch"]
        return (f"stopped after epoch {done} of {planned_epochs} planned: another epoch "
                f"would pass the {describe_seconds(self.plan.budget_s)} budget (this machine "
                f"ran slower than measured: {last:.1f} s an epoch against "
                f"{self.plan.epoch_s:.1f} s planned)")
