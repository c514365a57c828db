"""What follows an epoch's training steps: its test or validation pass, the run's files
(metrics.json, model.keras, TensorBoard events, the checkpoint), and after the last epoch
the weights kept and, with a validation set, the one test pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tfcnn.core.fsutil import atomic_path
from tfcnn.core.rundir import RunDir, write_metrics
from tfcnn.training import batchnorm
from tfcnn.training.averaging import averaged_weights, keep_averaged_weights
from tfcnn.training.context import Training
from tfcnn.training.feeds import Feeds
from tfcnn.training.steps import Steps


def best_epoch(records: list[dict[str, Any]]) -> int:
    """The epoch to keep: highest validation accuracy, then lowest validation loss, then first."""
    best = min(records, key=lambda r: (-r["val_accuracy"], r["val_loss"], r["epoch"]))
    return int(best["epoch"])


def _save_model(model: keras.Model, run: RunDir) -> None:
    with atomic_path(run.model, suffix=".keras") as tmp:
        model.save(tmp)


def _keep_best_weights(model: keras.Model, run: RunDir, records: list[dict[str, Any]]) -> int:
    """Load the best epoch's weights (saved in model.keras when it ended) into `model`."""
    best = best_epoch(records)
    if best != records[-1]["epoch"]:
        from tfcnn.models.network import load_model

        model.set_weights(load_model(run.model).get_weights())
    return best


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def held_out_pass(steps: Steps, batches: Any) -> tuple[float | None, float | None]:
    """(loss, accuracy) over `batches`; (None, None) when there are none."""
    if batches is None:  # no held-out images (an image folder with --val-split 0)
        return None, None
    for metric in steps.test_metrics:
        metric.reset_state()
    for images, labels in batches:
        steps.test(images, labels)
    loss, accuracy = (float(m.result()) for m in steps.test_metrics)
    return loss, accuracy


def _epoch_record(t: Training, feeds: Feeds, epoch: int, test_now: bool,
                  epoch_started: float) -> dict[str, Any]:
    """The epoch's record: training metrics, and test or validation ones."""
    test_loss, test_accuracy = held_out_pass(t.steps, feeds.test if test_now else None)
    val_loss, val_accuracy = held_out_pass(t.steps, feeds.val)
    loss, accuracy = (float(m.result()) for m in t.steps.train_metrics)
    record = {"epoch": epoch, "loss": _rounded(loss), "accuracy": _rounded(accuracy),
              "test_loss": _rounded(test_loss), "test_accuracy": _rounded(test_accuracy),
              "seconds": round(time.perf_counter() - epoch_started, 3)}
    if feeds.val is not None:
        record.update(val_loss=_rounded(val_loss), val_accuracy=_rounded(val_accuracy))
    return record


def judge_and_save(t: Training, feeds: Feeds, records: list[dict[str, Any]], epoch: int,
                   test_now: bool, epoch_started: float, clock: Callable[[], float],
                   note: Callable[[str], None] | None) -> dict[str, Any]:
    """Test (or validate) the epoch, then write metrics.json, model.keras (the best epoch's
    with validation) and the checkpoint; returns the epoch's record, appended to `records`.

    The test and model.keras get the model as it will be kept: with --ema the averaged
    weights (averaging.py), in a short run recomputed batch-norm statistics (batchnorm.py);
    the checkpoint gets the state training goes on from. `clock()`: the run's training
    seconds so far; `note` hears of a recomputation.
    """
    last = epoch == t.config.epochs
    total_steps = t.config.epochs * feeds.steps_per_epoch
    with averaged_weights(t.model, t.steps.optimizer), batchnorm.recomputed_statistics(
            t.model, t.data.x_train, total_steps, keep=last, note=note,
            skip=feeds.distributed):
        record = _epoch_record(t, feeds, epoch, test_now, epoch_started)
        records.append(record)
        write_metrics(t.run, t.config.dataset, t.model_name, records, clock(), extra=t.facts)
        if feeds.val is None or best_epoch(records) == epoch:
            _save_model(t.model, t.run)
    t.state.epoch.assign(epoch)
    t.state.step.assign(0)
    t.state.seconds.assign(clock())
    t.state.save()
    return record


def _log_scalars(writer: Any, epoch: int, values: dict[str, float]) -> None:
    with writer.as_default(step=epoch):
        for name, value in values.items():
            tf.summary.scalar(name, value)
    writer.flush()


def log_epoch(writers: dict[str, Any], epoch: int, record: dict[str, Any]) -> None:
    """The epoch's figures as TensorBoard scalars (writers "train" and "test")."""
    _log_scalars(writers["train"], epoch, {"loss": record["loss"],
                                           "accuracy": record["accuracy"]})
    if record["test_loss"] is not None:
        _log_scalars(writers["test"], epoch, {"loss": record["test_loss"],
                                              "accuracy": record["test_accuracy"]})
    if record.get("val_loss") is not None:
        _log_scalars(writers["test"], epoch, {"val_loss": record["val_loss"],
                                              "val_accuracy": record["val_accuracy"]})


def finish(t: Training, records: list[dict[str, Any]],
           feeds: Feeds) -> tuple[list[dict[str, Any]], float | None]:
    """After the last epoch: the kept weights, and with validation the one test pass."""
    if t.steps.optimizer is not None:  # the model ends with the weights model.keras has
        keep_averaged_weights(t.model, t.steps.optimizer)
    if feeds.val is not None and records:
        # The one use of the test set: the kept (best-on-validation) model's final report.
        kept = _keep_best_weights(t.model, t.run, records)
        final = held_out_pass(t.steps, feeds.test)
        write_metrics(t.run, t.config.dataset, t.model_name, records,
                      float(t.state.seconds.numpy()), final_test=final, best_epoch=kept,
                      extra=t.facts)
        return records, final[1]
    if records and records[-1]["test_accuracy"] is None and feeds.test is not None:
        # Stopped before the planned last epoch, which would have tested (stopping.py).
        records[-1]["test_loss"], records[-1]["test_accuracy"] = (
            _rounded(v) for v in held_out_pass(t.steps, feeds.test))
        write_metrics(t.run, t.config.dataset, t.model_name, records,
                      float(t.state.seconds.numpy()), extra=t.facts)
    return records, records[-1]["test_accuracy"] if records else None
