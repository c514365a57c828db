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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import TrainingInterrupted
from tfcnn.core.fsutil import atomic_path
from tfcnn.core.presets import tests_every_epoch
from tfcnn.core.rundir import RunDir, write_metrics
from tfcnn.data import pipeline
from tfcnn.training import batchnorm
from tfcnn.training.averaging import averaged_weights, keep_averaged_weights
from tfcnn.training.checkpoint import TrainingState
from tfcnn.training.signals import StopRequest, stop_on_signals
from tfcnn.training.steps import Steps, make_steps
from tfcnn.training.strategy import Distribution, distribute_dataset

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


@dataclass
class FitData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None  # with a validation set, the test set is used once, at the end
    y_val: np.ndarray | None = None


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
    strategy = distribution.strategy if distribution else None

    def feed(batches: tf.data.Dataset) -> Any:
        return batches if strategy is None else distribute_dataset(strategy, batches)

    shuffle_buffer = config.shuffle_buffer or pipeline.default_shuffle_buffer(len(data.y_train))
    train_pairs = pipeline.array_dataset(data.x_train, data.y_train)
    def held_out(images: np.ndarray | None, labels: np.ndarray | None) -> Any:
        if labels is None or not len(labels):
            return None
        return feed(pipeline.eval_batches(pipeline.array_dataset(images, labels),
                                          config.eval_batch_size))

    test_batches = held_out(data.x_test, data.y_test)
    val_batches = held_out(data.x_val, data.y_val)
    steps_per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    if strategy is not None and 0 < len(data.y_train) % config.batch_size < distribution.replicas:
        # A last batch smaller than the replica count leaves a replica with no images, and
        # batch-norm statistics of nothing are NaN: that batch (< replicas images) is left out.
        steps_per_epoch -= 1
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
    if not every_epoch and hooks.note and test_batches is not None and val_batches is None:
        hooks.note(f"testing after the last epoch only (--preset {config.preset}: a test pass "
                   "per epoch would cost time and change nothing trained)")
    with stop_on_signals(agree) as stop:
        for epoch in range(int(state.epoch.numpy()) + 1, config.epochs + 1):
            if on_epoch is not None and (changed := on_epoch(epoch, state)) is not None:
                steps, state = changed
            epoch_started = time.perf_counter()
            batches = feed(pipeline.train_batches(train_pairs, config.batch_size, shuffle_buffer,
                                                  config.seed, epoch, skip))
            bar = hooks.progress(epoch, steps_per_epoch, skip) if hooks.progress else _NoProgress()
            ran = _train_steps(steps, batches, steps_per_epoch - skip, config.steps_per_call,
                               bar, stop)
            done = skip + ran
            train_phase = time.perf_counter() - epoch_started
            signum = stop.stopping()
            if signum:
                state.step.assign(done)
                state.seconds.assign(seconds_before + time.perf_counter() - started)
                path = state.save()
                raise TrainingInterrupted(
                    f"interrupted in epoch {epoch} after step {done}/{steps_per_epoch}; "
                    f"checkpoint saved to {path}; continue with: tfcnn train --resume {run.path}",
                    signum)
            # With a validation set, epochs are judged on it and the test set waits for the end.
            # With --ema, epochs are judged, and model.keras saved, with the averaged weights;
            # the raw ones are back before the checkpoint (averaging.py).
            # A preset may test after the last epoch only (presets.tests_every_epoch).
            test_now = val_batches is None and (epoch == config.epochs or every_epoch)
            with averaged_weights(model, steps.optimizer):
                if epoch == config.epochs and strategy is None:
                    batchnorm.settle(model, data.x_train, config.epochs * steps_per_epoch,
                                     hooks.note)
                test_loss, test_accuracy = _test_pass(steps, test_batches if test_now else None)
                val_loss, val_accuracy = _test_pass(steps, val_batches)
            train_seconds = seconds_before + time.perf_counter() - started
            loss, accuracy = (float(m.result()) for m in steps.train_metrics)
            record = {"epoch": epoch, "loss": _rounded(loss), "accuracy": _rounded(accuracy),
                      "test_loss": _rounded(test_loss), "test_accuracy": _rounded(test_accuracy),
                      "seconds": round(time.perf_counter() - epoch_started, 3)}
            if val_batches is not None:
                record.update(val_loss=_rounded(val_loss), val_accuracy=_rounded(val_accuracy))
            records.append(record)
            _log_scalars(writers["train"], epoch, {"loss": loss, "accuracy": accuracy})
            if test_loss is not None:
                _log_scalars(writers["test"], epoch, {"loss": test_loss, "accuracy": test_accuracy})
            if val_loss is not None:
                _log_scalars(writers["test"], epoch, {"val_loss": val_loss,
                                                      "val_accuracy": val_accuracy})
            write_metrics(run, config.dataset, model_name, records, train_seconds)
            if val_batches is None or best_epoch(records) == epoch:
                with averaged_weights(model, steps.optimizer):
                    _save_model(model, run)
            state.epoch.assign(epoch)
            state.step.assign(0)
            state.seconds.assign(train_seconds)
            state.save()
            if hooks.epoch_end:
                images = min(ran * config.batch_size, len(data.y_train) - skip * config.batch_size)
                hooks.epoch_end({**record, "images_per_second": images / train_phase,
                                 "test_skipped": test_batches is not None and not test_now
                                 and val_batches is None})
            for metric in steps.train_metrics:
                metric.reset_state()
            skip = 0
    if steps.optimizer is not None:  # the model ends with the weights model.keras has
        keep_averaged_weights(model, steps.optimizer)
    if val_batches is not None and records:
        # The one use of the test set: the kept (best-on-validation) model's final report.
        kept = _keep_best_weights(model, run, records)
        final = _test_pass(steps, test_batches)
        write_metrics(run, config.dataset, model_name, records,
                      float(state.seconds.numpy()), final_test=final, best_epoch=kept)
        return records, final[1]
    return records, records[-1]["test_accuracy"] if records else None
