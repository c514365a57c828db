"""The tutorial's training loop, done right: epochs of compiled steps (steps.py), run files.

Differences from the tutorial, all deliberate:
- metrics are reset with `reset_state()` (Keras 3; `reset_states` is gone);
- SIGINT/SIGTERM finish the current step, save a checkpoint and stop cleanly;
- a short run's batch-norm statistics are recomputed at its end (batchnorm.py);
- a preset may test after its last epoch only (presets.tests_every_epoch).

Under a tf.distribute strategy (see strategy.py) the same steps run on every replica; with
none (the default) the code below is the plain single-device loop, unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import TrainingInterrupted
from tfcnn.core.fsutil import atomic_path
from tfcnn.core.presets import tests_every_epoch
from tfcnn.core.rundir import RunDir, write_metrics
from tfcnn.training import batchnorm
from tfcnn.training.averaging import averaged_weights, keep_averaged_weights
from tfcnn.training.checkpoint import TrainingState
from tfcnn.training.feeds import Feeds, FitData, make_feeds
from tfcnn.training.signals import StopRequest, stop_on_signals
from tfcnn.training.steps import Steps, make_steps
from tfcnn.training.strategy import Distribution

__all__ = ["FitData", "Hooks", "Progress", "Steps", "best_epoch", "fit", "make_steps"]


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class Hooks:
    """How the loop reports to its caller (the CLI); every hook is optional."""

    progress: Callable[[int, int, int], Progress] | None = None  # (epoch, steps, steps done)
    # The epoch's metrics.json record, plus "images_per_second" of its training phase.
    epoch_end: Callable[[dict[str, Any]], None] | None = None
    # A one-line remark worth showing the user (e.g. batch-norm statistics recomputed).
    note: Callable[[str], None] | None = None


def _save_model(model: keras.Model, run: RunDir) -> None:
    with atomic_path(run.model, suffix=".keras") as tmp:
        model.save(tmp)


def _log_scalars(writer: Any, epoch: int, values: dict[str, float]) -> None:
    with writer.as_default(step=epoch):
        for name, value in values.items():
            tf.summary.scalar(name, value)
    writer.flush()


def best_epoch(records: list[dict[str, Any]]) -> int:
    """The epoch to keep: highest validation accuracy, then lowest validation loss, then first."""
    best = min(records, key=lambda r: (-r["val_accuracy"], r["val_loss"], r["epoch"]))
    return int(best["epoch"])


def _keep_best_weights(model: keras.Model, run: RunDir, records: list[dict[str, Any]]) -> int:
    """Load the best epoch's weights (saved in model.keras when it ended) into `model`."""
    best = best_epoch(records)
    if best != records[-1]["epoch"]:
        from tfcnn.models.network import load_model

        model.set_weights(load_model(run.model).get_weights())
    return best


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


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


def _test_pass(steps: Steps, batches: Any) -> tuple[float | None, float | None]:
    if batches is None:  # no held-out images (an image folder with --val-split 0)
        return None, None
    for metric in steps.test_metrics:
        metric.reset_state()
    for images, labels in batches:
        steps.test(images, labels)
    loss, accuracy = (float(m.result()) for m in steps.test_metrics)
    return loss, accuracy


def _interrupt(state: TrainingState, done: int, seconds: float, epoch: int, feeds: Feeds,
               run: RunDir, signum: int) -> TrainingInterrupted:
    """Checkpoint the interrupted epoch's progress; the error that says how to go on."""
    state.step.assign(done)
    state.seconds.assign(seconds)
    path = state.save()
    return TrainingInterrupted(
        f"interrupted in epoch {epoch} after step {done}/{feeds.steps_per_epoch}; checkpoint "
        f"saved to {path}; continue with: tfcnn train --resume {run.path}", signum)


def _evaluate_epoch(model: keras.Model, steps: Steps, feeds: Feeds, data: FitData,
                    config: TrainConfig, epoch: int, test_now: bool, hooks: Hooks,
                    epoch_started: float) -> dict[str, Any]:
    """The epoch's record: training metrics, and test or validation ones.

    With --ema, epochs are judged with the averaged weights (averaging.py); after the last
    epoch of a short run, batch-norm statistics are recomputed first (batchnorm.py).
    """
    with averaged_weights(model, steps.optimizer):
        if epoch == config.epochs and not feeds.distributed:
            batchnorm.settle(model, data.x_train, config.epochs * feeds.steps_per_epoch,
                             hooks.note)
        test_loss, test_accuracy = _test_pass(steps, feeds.test if test_now else None)
        val_loss, val_accuracy = _test_pass(steps, feeds.val)
    loss, accuracy = (float(m.result()) for m in steps.train_metrics)
    record = {"epoch": epoch, "loss": _rounded(loss), "accuracy": _rounded(accuracy),
              "test_loss": _rounded(test_loss), "test_accuracy": _rounded(test_accuracy),
              "seconds": round(time.perf_counter() - epoch_started, 3)}
    if feeds.val is not None:
        record.update(val_loss=_rounded(val_loss), val_accuracy=_rounded(val_accuracy))
    return record


def _report_decode_failures(data: FitData, feeds: Feeds, hooks: Hooks) -> None:
    """Tell of streamed files that passed the header check but failed to decode."""
    failures = data.decode_failures()
    new = failures[len(feeds.reported):]
    if new and hooks.note:
        path, reason = new[0]
        more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
        hooks.note(f"{len(new)} image file(s) could not be decoded and were fed as black "
                   f"images: {path}: {reason}{more}; remove or repair them")
    feeds.reported[:] = failures


def _log_epoch(writers: dict[str, Any], epoch: int, record: dict[str, Any]) -> None:
    _log_scalars(writers["train"], epoch, {"loss": record["loss"],
                                           "accuracy": record["accuracy"]})
    if record["test_loss"] is not None:
        _log_scalars(writers["test"], epoch, {"loss": record["test_loss"],
                                              "accuracy": record["test_accuracy"]})
    if record.get("val_loss") is not None:
        _log_scalars(writers["test"], epoch, {"val_loss": record["val_loss"],
                                              "val_accuracy": record["val_accuracy"]})


def _save_epoch(model: keras.Model, steps: Steps, state: TrainingState, run: RunDir,
                config: TrainConfig, model_name: str, records: list[dict[str, Any]],
                seconds: float, validating: bool) -> None:
    """metrics.json, model.keras (the best epoch's with validation) and the checkpoint."""
    epoch = records[-1]["epoch"]
    write_metrics(run, config.dataset, model_name, records, seconds)
    if not validating or best_epoch(records) == epoch:
        with averaged_weights(model, steps.optimizer):
            _save_model(model, run)
    state.epoch.assign(epoch)
    state.step.assign(0)
    state.seconds.assign(seconds)
    state.save()


def _finish(model: keras.Model, steps: Steps, state: TrainingState, run: RunDir,
            config: TrainConfig, model_name: str, records: list[dict[str, Any]],
            feeds: Feeds) -> tuple[list[dict[str, Any]], float | None]:
    """After the last epoch: the kept weights, and with validation the one test pass."""
    if steps.optimizer is not None:  # the model ends with the weights model.keras has
        keep_averaged_weights(model, steps.optimizer)
    if feeds.val is not None and records:
        # The one use of the test set: the kept (best-on-validation) model's final report.
        kept = _keep_best_weights(model, run, records)
        final = _test_pass(steps, feeds.test)
        write_metrics(run, config.dataset, model_name, records,
                      float(state.seconds.numpy()), final_test=final, best_epoch=kept)
        return records, final[1]
    return records, records[-1]["test_accuracy"] if records else None


def fit(model: keras.Model, steps: Steps, state: TrainingState, data: FitData,
        config: TrainConfig, run: RunDir, model_name: str, records: list[dict[str, Any]],
        hooks: Hooks, distribution: Distribution | None = None, *,
        on_epoch: Callable[[int, TrainingState], tuple[Steps, TrainingState] | None]
        | None = None) -> tuple[list[dict[str, Any]], float | None]:
    """Train from the state's (epoch, step) to `config.epochs`; write metrics, model, checkpoints.

    Returns the epoch records and the final test accuracy: the last epoch's, or with a
    validation set, the test accuracy of the best epoch's model (the one model.keras keeps).

    `config.seed` must be set (the caller draws one if the user gave none). Under a
    `distribution`, `steps` must come from make_steps with its strategy, and every worker
    calls this alike; `run` is where this worker writes (a temporary one off the chief).
    `on_epoch(epoch, state)`, before each epoch, may return new steps and state to go on
    with (a `keras:` backbone unfrozen: new trainable variables, training/photo.py).
    """
    assert config.seed is not None
    feeds = make_feeds(data, config, distribution, run.path / "cache")
    writers = {part: tf.summary.create_file_writer(str(run.logs / part))
               for part in ("train", "test")}
    records = list(records)
    skip = int(state.step.numpy())  # > 0 only when resuming an interrupted epoch
    if skip == 0:
        for metric in steps.train_metrics:
            metric.reset_state()
    seconds_before = float(state.seconds.numpy())
    started = time.perf_counter()
    agree = distribution.agree_stop if distribution and distribution.multi_worker else None
    every_epoch = tests_every_epoch(config)
    if not every_epoch and hooks.note and feeds.test is not None and feeds.val is None:
        hooks.note(f"testing after the last epoch only (--preset {config.preset}: a test pass "
                   "per epoch would cost time and change nothing trained)")
    with stop_on_signals(agree) as stop:
        for epoch in range(int(state.epoch.numpy()) + 1, config.epochs + 1):
            if on_epoch is not None and (changed := on_epoch(epoch, state)) is not None:
                steps, state = changed
            epoch_started = time.perf_counter()
            bar = (hooks.progress(epoch, feeds.steps_per_epoch, skip) if hooks.progress
                   else _NoProgress())
            ran = _train_steps(steps, feeds.train_batches(config, epoch, skip),
                               feeds.steps_per_epoch - skip, config.steps_per_call, bar, stop)
            train_phase = time.perf_counter() - epoch_started
            signum = stop.stopping()
            if signum:
                raise _interrupt(state, skip + ran, seconds_before + time.perf_counter()
                                 - started, epoch, feeds, run, signum)
            # With a validation set, epochs are judged on it and the test set waits for the
            # end; a preset may test after the last epoch only (presets.tests_every_epoch).
            test_now = feeds.val is None and (epoch == config.epochs or every_epoch)
            record = _evaluate_epoch(model, steps, feeds, data, config, epoch, test_now, hooks,
                                     epoch_started)
            records.append(record)
            _log_epoch(writers, epoch, record)
            _save_epoch(model, steps, state, run, config, model_name, records,
                        seconds_before + time.perf_counter() - started, feeds.val is not None)
            _report_decode_failures(data, feeds, hooks)
            if hooks.epoch_end:
                images = min(ran * config.batch_size, len(data.y_train) - skip * config.batch_size)
                hooks.epoch_end({**record, "images_per_second": images / train_phase,
                                 "test_skipped": feeds.test is not None and not test_now
                                 and feeds.val is None})
            for metric in steps.train_metrics:
                metric.reset_state()
            skip = 0
    return _finish(model, steps, state, run, config, model_name, records, feeds)
