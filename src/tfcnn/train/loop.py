"""The tutorial's training loop, done right: tf.GradientTape steps under tf.function.

Differences from the tutorial, all deliberate:
- the model returns logits and the loss is built `from_logits=True` (no double softmax);
- model, optimizer and metrics are passed in and closed over, never module globals;
- metrics are reset with `reset_state()` (Keras 3; `reset_states` is gone);
- the loss metric averages over images, so the last, smaller batch is weighted fairly;
- SIGINT/SIGTERM finish the current step, save a checkpoint and stop cleanly.

Under a tf.distribute strategy (see strategy.py) the same steps run on every replica; with
none (the default) the code below is the plain single-device loop, unchanged.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from tfcnn.config import TrainConfig
from tfcnn.data import pipeline
from tfcnn.errors import TrainingInterrupted
from tfcnn.fsutil import atomic_path
from tfcnn.train.checkpoint import TrainingState
from tfcnn.train.rundir import RunDir, write_metrics
from tfcnn.train.strategy import Distribution, distribute_dataset, global_mean, replicated_steps


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class Hooks:
    """How the loop reports to its caller (the CLI); every hook is optional."""

    progress: Callable[[int, int, int], Progress] | None = None  # (epoch, steps, steps done)
    # The epoch's metrics.json record, plus "images_per_second" of its training phase.
    epoch_end: Callable[[dict[str, Any]], None] | None = None


@dataclass
class Steps:
    train: Callable[[Any, tf.Tensor], None]  # (iterator over batches, number of steps)
    test: Callable[[tf.Tensor, tf.Tensor], None]
    train_metrics: list[keras.metrics.Metric]
    test_metrics: list[keras.metrics.Metric]


def make_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer,
               image_shape: tuple[int, ...], strategy: Any = None) -> Steps:
    """Compiled train and test steps closing over the model, optimizer and metrics.

    With a `strategy`, call this in its scope (the metrics' variables are created here).
    """
    per_image_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    train_loss = keras.metrics.Mean("loss")
    train_accuracy = keras.metrics.SparseCategoricalAccuracy("accuracy")
    test_loss = keras.metrics.Mean("test_loss")
    test_accuracy = keras.metrics.SparseCategoricalAccuracy("test_accuracy")
    # A fixed signature: the last, smaller batch must not trigger a second trace.
    signature = (tf.TensorSpec((None, *image_shape), tf.float32), tf.TensorSpec((None,), tf.int32))

    def train_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_image_loss(labels, logits)
            loss = tf.reduce_mean(losses) if strategy is None else global_mean(losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        train_loss.update_state(losses)
        train_accuracy.update_state(labels, logits)

    def test_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        logits = model(images, training=False)
        test_loss.update_state(per_image_loss(labels, logits))
        test_accuracy.update_state(labels, logits)

    metrics = ([train_loss, train_accuracy], [test_loss, test_accuracy])
    if strategy is not None:
        statistics = [v for v in model.non_trainable_variables
                      if keras.backend.is_float_dtype(v.dtype)]
        return Steps(*replicated_steps(strategy, train_step, test_step, statistics), *metrics)

    # Several steps per call (like Keras's steps_per_execution): the same updates in the same
    # order, without a Python round trip and function-call overhead between steps.
    @tf.function
    def train_steps(batches: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            images, labels = next(batches)
            train_step(images, labels)

    return Steps(train_steps, tf.function(test_step, input_signature=signature), *metrics)


@dataclass
class StopRequest:
    """Set by a signal handler; the loop checks it between steps."""

    signum: int = 0
    previous: dict[int, Any] = field(default_factory=dict)
    # Multi-worker: every worker's requests combined, so that all stop after the same step.
    agree: Callable[[int], int] | None = None

    def stopping(self) -> int:
        """The signal to stop for, or 0 to carry on (the same on every worker)."""
        return self.agree(self.signum) if self.agree else self.signum


@contextlib.contextmanager
def stop_on_signals(agree: Callable[[int], int] | None = None) -> Iterator[StopRequest]:
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step.

    A second SIGINT falls back to the default (KeyboardInterrupt) for an impatient user.
    """
    request = StopRequest(agree=agree)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, _frame: Any) -> None:
        request.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for signum in (signal.SIGINT, signal.SIGTERM):
        request.previous[signum] = signal.signal(signum, handle)
    try:
        yield request
    finally:
        for signum, handler in request.previous.items():
            signal.signal(signum, handler)


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
        hooks: Hooks, distribution: Distribution | None = None) -> list[dict[str, Any]]:
    """Train from the state's (epoch, step) to `config.epochs`; write metrics, model, checkpoints.

    `config.seed` must be set (the caller draws one if the user gave none). Under a
    `distribution`, `steps` must come from make_steps with its strategy, and every worker
    calls this alike; `run` is where this worker writes (a temporary one off the chief).
    """
    assert config.seed is not None
    strategy = distribution.strategy if distribution else None

    def feed(batches: tf.data.Dataset) -> Any:
        return batches if strategy is None else distribute_dataset(strategy, batches)

    shuffle_buffer = config.shuffle_buffer or pipeline.default_shuffle_buffer(len(data.y_train))
    train_pairs = pipeline.array_dataset(data.x_train, data.y_train)
    test_batches = (feed(pipeline.eval_batches(pipeline.array_dataset(data.x_test, data.y_test),
                                               config.eval_batch_size))
                    if len(data.y_test) else None)
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
    with stop_on_signals(agree) as stop:
        for epoch in range(int(state.epoch.numpy()) + 1, config.epochs + 1):
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
            test_loss, test_accuracy = _test_pass(steps, test_batches)
            train_seconds = seconds_before + time.perf_counter() - started
            loss, accuracy = (float(m.result()) for m in steps.train_metrics)
            record = {"epoch": epoch, "loss": _rounded(loss), "accuracy": _rounded(accuracy),
                      "test_loss": _rounded(test_loss), "test_accuracy": _rounded(test_accuracy),
                      "seconds": round(time.perf_counter() - epoch_started, 3)}
            records.append(record)
            _log_scalars(writers["train"], epoch, {"loss": loss, "accuracy": accuracy})
            if test_loss is not None:
                _log_scalars(writers["test"], epoch, {"loss": test_loss, "accuracy": test_accuracy})
            write_metrics(run, config.dataset, model_name, records, train_seconds)
            _save_model(model, run)
            state.epoch.assign(epoch)
            state.step.assign(0)
            state.seconds.assign(train_seconds)
            state.save()
            if hooks.epoch_end:
                images = min(ran * config.batch_size, len(data.y_train) - skip * config.batch_size)
                hooks.epoch_end({**record, "images_per_second": images / train_phase})
            for metric in steps.train_metrics:
                metric.reset_state()
            skip = 0
    return records
