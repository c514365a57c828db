"""Weight averaging: an exponential moving average (EMA) of the weights (`--ema M`).

Keras's optimizer keeps the average (`use_ema`): after every step,
average <- M * average + (1 - M) * weights. Training itself goes on from the raw weights;
what is judged and kept is the average: each epoch's test (or validation) pass and
model.keras use it, swapped in for that moment, and the checkpoint, saved after the swap
back, holds both, so a resumed run continues exactly. After the last epoch the average
stays in the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras


def averages_of(optimizer: keras.optimizers.Optimizer | None) -> list[keras.Variable] | None:
    """The optimizer's moving averages of the trainable weights; None without EMA (or one)."""
    if not getattr(optimizer, "use_ema", False):
        return None
    # Keras builds them in Optimizer.build() and offers no public accessor but this name.
    return list(optimizer._model_variables_moving_average)


@contextmanager
def averaged_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer | None
                     ) -> Iterator[None]:
    """Within the block the model holds the averaged weights; the raw ones come back after."""
    averages = averages_of(optimizer)
    if averages is None:
        yield
        return
    variables = model.trainable_variables
    raw = [v.numpy() for v in variables]
    for variable, average in zip(variables, averages, strict=True):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, raw, strict=True):
            variable.assign(value)


def keep_averaged_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Put the averaged weights into the model for good (after the last epoch)."""
    if averages_of(optimizer) is not None:
        optimizer.finalize_variable_values(model.trainable_variables)
