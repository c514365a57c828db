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

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfcnn.core.errors import RunDirError
from tfcnn.core.rundir import remove_partial_checkpoints

KEEP_CHECKPOINTS = 3


@dataclass
class TrainingState:
    """The tracked variables of a run and the manager that saves them."""

    epoch: tf.Variable           # completed epochs
    step: tf.Variable            # training steps done in epoch `epoch + 1`
    seconds: tf.Variable         # training wall seconds spent before this process
    manager: tf.train.CheckpointManager

    def save(self) -> str:
        """Save a checkpoint; its path. A save that fails (a full disk) leaves nothing behind:
        TensorFlow's part-written `ckpt-N_temp/` folder is removed before the error goes on."""
        try:
            return self.manager.save(checkpoint_number=None)
        except BaseException:
            remove_partial_checkpoints(Path(self.manager.directory))
            raise


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


def _candidates(directory: Path) -> list[str]:
    """The run's checkpoint prefixes, newest first: those its state file lists, or found."""
    try:
        listed = tf.train.get_checkpoint_state(str(directory))
    except (tf.errors.OpError, ValueError):  # an unreadable state file: look for the files
        listed = None
    if listed is not None and listed.all_model_checkpoint_paths:
        paths = [str(directory / Path(p).name) for p in listed.all_model_checkpoint_paths]
    else:
        paths = [str(f.with_suffix("")) for f in directory.glob("ckpt-*.index")]
    number = {p: int(m.group(1)) if (m := _NUMBER.search(p)) else -1 for p in paths}
    return sorted(paths, key=number.__getitem__, reverse=True)


_NUMBER = re.compile(r"ckpt-(\d+)$")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def restore_latest(state: TrainingState, directory: Path | None = None) -> tuple[str, str | None]:
    """Load the newest intact checkpoint into `state`: (its path, a note or None).

    A newest checkpoint that cannot be read (truncated by a full disk or a crash) is passed
    over for the older one before it; the note says so, for the user. RunDirError when there
    is no checkpoint, none is intact, or they do not match this run's model.
    `directory` reads another folder than the one `state` saves to: a multi-worker run's
    other workers save to temporary folders but resume from the chief's checkpoints.
    """
    folder = Path(directory or state.manager.directory)
    paths = _candidates(folder)
    if not paths:
        raise RunDirError(f"{folder}: no checkpoint to resume from")
    unreadable: list[str] = []
    for path in paths:
        try:
            state.manager.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError) as exc:
            raise RunDirError(f"{path}: checkpoint does not match this run's model "
                              f"({_first_line(exc)})") from None
        except (IndexError, OSError, tf.errors.OpError) as exc:  # truncated or missing parts
            unreadable.append(f"{Path(path).name} ({_first_line(exc)})")
            continue
        if not unreadable:
            return path, None
        return path, (f"checkpoint {'; '.join(unreadable)} is unreadable; resumed from the "
                      f"older {Path(path).name} instead (epoch {int(state.epoch.numpy())}, "
                      f"step {int(state.step.numpy())})")
    raise RunDirError(f"{folder}: no intact checkpoint to resume from: "
                      f"{'; '.join(unreadable)} (start again with a new --out)")


def has_checkpoints(directory: Path) -> bool:
    """True when `directory` holds any checkpoint (intact or not)."""
    return bool(_candidates(directory)) if directory.is_dir() else False
