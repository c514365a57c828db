"""`Hooks`: how the training loop tells its caller (the CLI, the API) how training goes.

No TensorFlow here: the CLI and the API build their hooks before it loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import keras


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class Hooks:
    """What the loop calls as it goes; every hook is optional."""

    progress: Callable[[int, int, int], Progress] | None = None  # (epoch, steps, steps done)
    # The epoch's metrics.json record, plus "images_per_second" of its training phase.
    epoch_end: Callable[[dict[str, Any]], None] | None = None
    # A one-line remark worth showing the user (e.g. batch-norm statistics recomputed),
    # told after the epoch line it belongs to.
    note: Callable[[str], None] | None = None
    # Before the first epoch: the Keras model being trained, and the steps of an epoch.
    train_begin: Callable[[keras.Model, int], None] | None = None
    epoch_begin: Callable[[int], None] | None = None  # the 1-based epoch about to train
    # Asked after each epoch_end: True ends training there (Keras's model.stop_training).
    stop_requested: Callable[[], bool] | None = None
