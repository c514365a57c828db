"""The tutorial's training loop, done right: epochs of compiled steps (steps.py), run files.

Differences from the tutorial, all deliberate:
- metrics are reset with `reset_state()` (Keras 3; `reset_states` is gone);
- SIGINT/SIGTERM finish the current step, save a checkpoint and stop cleanly;
- a short run's epochs are judged and saved with recomputed batch-norm statistics
  (batchnorm.py);
- a preset may test after its last epoch only (presets.tests_every_epoch).

What follows each epoch's steps (its test, the run files) is in epochs.py; the run's parts
travel as one `Training` (context.py). Under a tf.distribute strategy (see strategy.py) the
same steps run on every replica; with none (the default) the code below is the plain
single-device loop, unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import tensorflow as tf

from tfcnn.core.errors import TrainingInterrupted
from tfcnn.core.presets import tests_every_epoch
from tfcnn.training.context import Training
from tfcnn.training.epochs import best_epoch, finish, judge_and_save, log_epoch
from tfcnn.training.feeds import Feeds, FitData, make_feeds
from tfcnn.training.hooks import Hooks, Progress
from tfcnn.training.signals import StopRequest, stop_on_signals
from tfcnn.training.steps import Steps, make_steps
from tfcnn.training.stopping import first_reason

__all__ = ["FitData", "Hooks", "Progress", "Steps", "Training", "best_epoch", "fit",
           "make_steps"]


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _train_steps(steps: Steps, batches: Any, total: int, per_call: int,
                 bar: Progress, stop: StopRequest) -> int:
    """Run `total` training steps, `per_call` at a time; return how many ran.

    Fewer run when a stop is requested: the check comes between calls.
    """
    iterator = iter(batches)
    count = 0
    try:
        while count < total and not stop.stopping():
            n = min(per_call, total - count)
            steps.train(iterator, tf.constant(n, dtype=tf.int64))
            count += n
            bar.update(n)
    finally:
        bar.close()
    return count


def _interrupt(t: Training, done: int, seconds: float, epoch: int, feeds: Feeds,
               signum: int) -> TrainingInterrupted:
    """Checkpoint the interrupted epoch's progress; the error that says how to go on."""
    t.state.step.assign(done)
    t.state.seconds.assign(seconds)
    path = t.state.save()
    return TrainingInterrupted(
        f"interrupted in epoch {epoch} after step {done}/{feeds.steps_per_epoch}; checkpoint "
        f"saved to {path}; continue with: tfcnn train --resume {t.run.path}", signum)


def _decode_failure_note(data: FitData, feeds: Feeds) -> list[str]:
    """A note on streamed files that passed the header check but failed to decode, if new."""
    failures = data.decode_failures()
    new = failures[len(feeds.reported):]
    feeds.reported[:] = failures
    if not new:
        return []
    path, reason = new[0]
    more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
    return [f"{len(new)} image file(s) could not be decoded and were fed as black "
            f"images: {path}: {reason}{more}; remove or repair them"]


def _next_phase(t: Training, epoch: int) -> Training:
    """`t` with the steps and state `on_epoch` asks for before `epoch`, if any."""
    if t.on_epoch is None or (changed := t.on_epoch(epoch, t.state)) is None:
        return t
    steps, state = changed
    return dataclasses.replace(t, steps=steps, state=state)


def _tell(t: Training, record: dict[str, Any], images: int, train_phase: float,
          test_skipped: bool, notes: list[str]) -> None:
    """The epoch's line for the caller, then the notes that belong to it."""
    if t.hooks.epoch_end:
        t.hooks.epoch_end({**record, "images_per_second": images / train_phase,
                           "test_skipped": test_skipped})
    for line in notes:
        if t.hooks.note:
            t.hooks.note(line)


def _note_test_at_end(t: Training, feeds: Feeds) -> None:
    if (t.hooks.note and not tests_every_epoch(t.config) and feeds.test is not None
            and feeds.val is None):
        t.hooks.note(f"testing after the last epoch only (--preset {t.config.preset}: a test "
                     "pass per epoch would cost time and change nothing trained)")


def fit(t: Training, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float | None]:
    """Train from the state's (epoch, step) to `config.epochs`; write metrics, model, checkpoints.

    `records` are the epochs already done (a resumed run's). Returns the epoch records and
    the final test accuracy: the last epoch's, or with a validation set, the test accuracy
    of the best epoch's model (the one model.keras keeps). Training ends early, after an
    epoch, when `hooks.stop_requested()` says so.

    `config.seed` must be set (the caller draws one if the user gave none). Under a
    `distribution`, every worker calls this alike.
    """
    config, hooks = t.config, t.hooks
    assert config.seed is not None
    feeds = make_feeds(t.data, config, t.distribution, t.run.path / "cache")
    writers = {part: tf.summary.create_file_writer(str(t.run.logs / part))
               for part in ("train", "test")}
    records = list(records)
    skip = int(t.state.step.numpy())  # > 0 only when resuming an interrupted epoch
    if skip == 0:
        for metric in t.steps.train_metrics:
            metric.reset_state()
    seconds_before, started = float(t.state.seconds.numpy()), time.perf_counter()

    def clock() -> float:  # the run's training seconds so far
        return seconds_before + time.perf_counter() - started

    distribution = t.distribution
    agree = distribution.agree_stop if distribution and distribution.multi_worker else None
    every_epoch = tests_every_epoch(config)
    _note_test_at_end(t, feeds)
    if hooks.train_begin:
        hooks.train_begin(t.model, feeds.steps_per_epoch)
    first = int(t.state.epoch.numpy()) + 1
    with stop_on_signals(agree) as stop:
        for epoch in range(first, config.epochs + 1):
            if _stopped(t, records):  # a resumed run that had stopped before its end
                break
            t = _next_phase(t, epoch)
            if hooks.epoch_begin:
                hooks.epoch_begin(epoch)
            epoch_started = time.perf_counter()
            bar = (hooks.progress(epoch, feeds.steps_per_epoch, skip) if hooks.progress
                   else _NoProgress())
            ran = _train_steps(t.steps, feeds.train_batches(config, epoch, skip),
                               feeds.steps_per_epoch - skip, config.steps_per_call, bar, stop)
            train_phase = time.perf_counter() - epoch_started
            signum = stop.stopping()
            if signum:
                raise _interrupt(t, skip + ran, clock(), epoch, feeds, signum)
            # With a validation set, epochs are judged on it and the test set waits for the
            # end; a preset may test after the last epoch only (presets.tests_every_epoch).
            test_now = feeds.val is None and (epoch == config.epochs or every_epoch)
            notes: list[str] = []
            # The batch-norm note once a process, after its first epoch's line.
            record = judge_and_save(t, feeds, records, epoch, test_now, epoch_started, clock,
                                    notes.append if epoch == first else None)
            log_epoch(writers, epoch, record)
            images = min(ran * config.batch_size, len(t.data.y_train) - skip * config.batch_size)
            _tell(t, record, images, train_phase,
                  feeds.test is not None and not test_now and feeds.val is None,
                  notes + _decode_failure_note(t.data, feeds))
            for metric in t.steps.train_metrics:
                metric.reset_state()
            skip = 0
            if hooks.stop_requested and hooks.stop_requested():
                break
    return finish(t, records, feeds)


def _stopped(t: Training, records: list[dict[str, Any]]) -> bool:
    """Whether a stop rule (stopping.py) ends training after the epochs in `records`;
    the reason goes into metrics.json's "stopped" and to the caller's note hook."""
    reason = first_reason(t.stop_rules, records)
    if reason is None:
        return False
    if "stopped" not in t.facts and t.hooks.note:
        t.hooks.note(reason)
    t.facts["stopped"] = {"after_epoch": records[-1]["epoch"], "reason": reason}
    return True
