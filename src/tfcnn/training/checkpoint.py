"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model (weights, batch-norm statistics and the dropout layers'
random-generator state), the optimizer (Adam's moments and step count), the position in
training (completed epochs, steps done in the current epoch), the running training
metrics of a part-done epoch, and the training seconds spent so far. The epoch's data
order is recomputed from the seed, so (epoch, step) is all the data state there is.
Saving and retention are `tf.train.CheckpointManager`'s; its index file is only updated
once a checkpoint is complete, so a kill mid-save leaves the previous one in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfcnn.core.errors import RunDirError

KEEP_CHECKPOINTS = 3


@dataclass
class TrainingState:
    """The tracked variables of a run and the manager that saves them."""

    epoch: tf.Variable           # completed epochs
    step: tf.Variable            # training steps done in epoch `epoch + 1`
    seconds: tf.Variable         # training wall seconds spent before this process
    manager: tf.train.CheckpointManager

    def save(self) -> str:
        return self.manager.save(checkpoint_number=None)


def make_training_state(directory: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                        metrics: list[keras.metrics.Metric]) -> TrainingState:
    """Create the checkpointed state; optimizer slots are built now so restore can fill them."""
    optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
    # Variables are listed explicitly: a Keras 3 model given to tf.train.Checkpoint as an
    # object saves nothing of its own (its weights only appear through the optimizer), so
    # batch-norm statistics and dropout seed state would be silently lost on resume.
    checkpoint = tf.train.Checkpoint(
        model=list(model.variables), optimizer=list(optimizer.variables),
        metrics=[v for metric in metrics for v in metric.variables],
        epoch=epoch, step=step, seconds=seconds)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=KEEP_CHECKPOINTS)
    return TrainingState(epoch, step, seconds, manager)


def restore_latest(state: TrainingState, directory: Path | None = None) -> str:
    """Load the newest checkpoint into `state`; raise RunDirError if there is none.

    `directory` reads another folder than the one `state` saves to: a multi-worker run's
    other workers save to temporary folders but resume from the chief's checkpoints.
    """
    if directory is None:
        path = state.manager.latest_checkpoint
    else:
        path = tf.train.latest_checkpoint(str(directory))
    if path is None:
        raise RunDirError(f"{directory or state.manager.directory}: no checkpoint to resume from")
    try:
        state.manager.checkpoint.restore(path).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{path}: checkpoint does not match this run's model ({first_line})"
                          ) from None
    return path
