"""Keras callbacks in a tfcnn run: `tfcnn.train(callbacks=[...])`.

The callbacks get the epoch-level calls `keras.Model.fit` makes, in its order and with its
epoch numbers (from 0): `on_train_begin()`, `on_epoch_begin(epoch)`,
`on_epoch_end(epoch, logs)` and `on_train_end(logs)`. `logs` holds "loss" and "accuracy"
(training), "val_loss" and "val_accuracy" (with a validation split), and "test_loss" and
"test_accuracy" (in epochs that test; after the last epoch, with a validation split, in
`on_train_end`'s logs only). `self.model` is the Keras model being trained; setting
`self.model.stop_training = True` ends training after that epoch, saved like any other
(resuming the run continues it). Batch-level calls are not made: the steps run in compiled
calls of `steps_per_call`. Training in one process only (no multi-worker strategy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from tfcnn.core.errors import ConfigError
from tfcnn.training.hooks import Hooks

_LOG_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def keras_logs(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record's figures as Keras logs (those the epoch has)."""
    return {key: float(record[key]) for key in _LOG_KEYS if record.get(key) is not None}


def check_callbacks(callbacks: Sequence[Any]) -> list[Any]:
    """The callbacks as a list; ConfigError for anything not a keras.callbacks.Callback."""
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Sequence):
        raise ConfigError(f"callbacks: expected a list of keras.callbacks.Callback objects, "
                          f"got {type(callbacks).__name__}")
    if not callbacks:
        return []
    import keras

    for index, callback in enumerate(callbacks):
        if not isinstance(callback, keras.callbacks.Callback):
            raise ConfigError(f"callbacks[{index}]: expected a keras.callbacks.Callback, got "
                              f"{type(callback).__name__} (for a function of each epoch's "
                              "record, use on_epoch_end=)")
    return list(callbacks)


class KerasCallbacks:
    """Keras callbacks driven by the training loop's hooks."""

    def __init__(self, callbacks: Sequence[Any], epochs: int) -> None:
        import keras

        self.list = keras.callbacks.CallbackList(list(callbacks))
        self.epochs = epochs
        self.model: Any = None
        self.last_logs: dict[str, float] = {}

    def train_begin(self, model: Any, steps: int) -> None:
        self.model = model
        model.stop_training = False
        self.list.set_model(model)
        self.list.set_params({"epochs": self.epochs, "steps": steps, "verbose": 0})
        self.list.on_train_begin()

    def epoch_begin(self, epoch: int) -> None:
        self.list.on_epoch_begin(epoch - 1)

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.last_logs = keras_logs(record)
        self.list.on_epoch_end(record["epoch"] - 1, dict(self.last_logs))

    def stop_requested(self) -> bool:
        return bool(getattr(self.model, "stop_training", False))

    def train_end(self, final: dict[str, Any]) -> None:
        """After training: the last epoch's logs, with the final test figures."""
        if self.model is None:  # nothing trained (the run was finished)
            return
        logs = {**self.last_logs, **keras_logs(final)}
        self.list.on_train_end(logs)


def with_callbacks(hooks: Hooks, callbacks: KerasCallbacks | None) -> Hooks:
    """`hooks` with the Keras callbacks called too (after the hooks' own epoch_end)."""
    if callbacks is None:
        return hooks
    own: Callable[[dict[str, Any]], None] | None = hooks.epoch_end

    def epoch_end(record: dict[str, Any]) -> None:
        if own is not None:
            own(record)
        callbacks.epoch_end(record)

    return dataclasses.replace(hooks, epoch_end=epoch_end, train_begin=callbacks.train_begin,
                               epoch_begin=callbacks.epoch_begin,
                               stop_requested=callbacks.stop_requested)
