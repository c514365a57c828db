"""Training photo models: a `keras:` backbone's phases, and balanced class weights.

A backbone with pretrained weights trains its new head alone for `--freeze-epochs` epochs,
then is fine-tuned at `--fine-tune-lr` (models/backbones.backbone_phase says which layers).
A phase change changes the trainable variables, so `BackbonePhases.on_epoch` then makes a new
optimizer (it holds one slot per variable) and traces the training step anew, and the run's
checkpoints continue with them. A resumed run starts in the phase its checkpoint was saved
in (so the optimizer's variables match) and changes phase where the uninterrupted run did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.training.checkpoint import TrainingState, make_training_state
from tfcnn.training.steps import Steps

OptimizerFactory = Callable[[TrainConfig, int], keras.optimizers.Optimizer]


def balanced_class_weights(labels: np.ndarray, classes: int) -> list[float]:
    """Per-class loss weights n / (classes * count_c) (scikit-learn's "balanced"), so every
    class weighs the same in the training loss; a class with no image gets 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    total = counts.sum()
    return [float(total / (classes * c)) if c else 1.0 for c in counts]


def checkpoint_epoch(directory: Path) -> int:
    """The 0-based epoch the newest checkpoint of `directory` was saved in (0: none): its
    optimizer is that epoch's phase's. At an epoch's end (step 0) that is the completed epoch;
    interrupted mid-epoch, the one under way."""
    latest = tf.train.latest_checkpoint(str(directory)) if directory.is_dir() else None
    if latest is None:
        return 0
    try:
        reader = tf.train.load_checkpoint(latest)
        epoch = int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):  # unreadable: restore_latest will say so
        return 0
    return epoch - 1 if step == 0 and epoch > 0 else epoch


@dataclass
class BackbonePhases:
    """The phase of a `keras:` model's backbone, and the optimizer and steps that go with it."""

    model: Any
    config: TrainConfig
    steps_per_epoch: int
    make_optimizer: OptimizerFactory
    new_steps: Callable[[keras.optimizers.Optimizer], Steps]
    directory: Path  # where this process saves checkpoints
    phase: str | None = None

    @classmethod
    def of(cls, model: keras.Model, config: TrainConfig, steps_per_epoch: int,
           make_optimizer: OptimizerFactory,
           new_steps: Callable[[keras.optimizers.Optimizer], Steps],
           directory: Path) -> BackbonePhases | None:
        """The phases of `model` if it is a BackboneModel, else None."""
        from tfcnn.models.backbones import BackboneModel

        if not isinstance(model, BackboneModel):
            return None
        return cls(model, config, steps_per_epoch, make_optimizer, new_steps, directory)

    def _set_phase(self, epoch: int) -> str:
        from tfcnn.models.backbones import backbone_phase

        c = self.config
        return backbone_phase(self.model, epoch, c.freeze_epochs, c.fine_tune_layers)

    def phase_config(self) -> TrainConfig:
        """The settings the current phase's optimizer follows: the head trains at --lr over
        the frozen epochs, the fine-tuning at --fine-tune-lr (default --lr / 10 after frozen
        epochs) over the rest; each phase has its own --schedule."""
        c = self.config
        if self.phase == "head":
            return c.replace(epochs=max(1, min(c.freeze_epochs, c.epochs)))
        if self.phase == "fine-tune" and c.freeze_epochs:
            return c.replace(lr=c.fine_tune_lr or c.lr / 10,
                             epochs=max(1, c.epochs - c.freeze_epochs))
        if self.phase == "fine-tune" and c.fine_tune_lr:
            return c.replace(lr=c.fine_tune_lr)
        return c

    def optimizer_for(self, epoch: int) -> keras.optimizers.Optimizer:
        """Set the backbone for 0-based `epoch`; the optimizer for its phase."""
        self.phase = self._set_phase(epoch)
        return self.make_optimizer(self.phase_config(), self.steps_per_epoch)

    def on_epoch(self, epoch: int, state: TrainingState) -> tuple[Steps, TrainingState] | None:
        """Before 1-based `epoch`: None while the phase holds; at a change, the new steps and a
        checkpointed state that carries on from `state` (epoch, step, seconds, numbering)."""
        before = self.phase
        if self._set_phase(epoch - 1) == before:
            return None
        optimizer = self.optimizer_for(epoch - 1)
        steps = self.new_steps(optimizer)
        new = make_training_state(self.directory, self.model, optimizer, steps.train_metrics)
        for mine, old in ((new.epoch, state.epoch), (new.step, state.step),
                          (new.seconds, state.seconds)):
            mine.assign(old)
        # Checkpoint numbers go on from the old ones (resume takes the highest number).
        new.manager.checkpoint.save_counter.assign(state.manager.checkpoint.save_counter)
        return steps, new
