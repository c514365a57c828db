"""What the training loop's parts share: one `Training`, the run as the loop trains it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras

from tfcnn.core.config import TrainConfig
from tfcnn.core.rundir import RunDir
from tfcnn.training.checkpoint import TrainingState
from tfcnn.training.feeds import FitData
from tfcnn.training.hooks import Hooks
from tfcnn.training.steps import Steps
from tfcnn.training.stopping import StopRule
from tfcnn.training.strategy import Distribution

# A `keras:` backbone's phase change (training/photo.py): called before each epoch with the
# epoch and the state, it gives the new steps and state to go on with, or None.
EpochStart = Callable[[int, TrainingState], "tuple[Steps, TrainingState] | None"]


@dataclass(frozen=True)
class Training:
    """One run as the loop trains it: the model with its steps and checkpointed state, the
    data, the settings, where it writes and who hears of it.

    `run` is where this process writes (a temporary folder off a multi-worker run's chief);
    under a `distribution`, `steps` come from make_steps with its strategy. `steps` and
    `state` change only through `on_epoch` (EpochStart), between epochs. `stop_rules` may
    end training after an epoch (stopping.py); `facts` are the run-level figures
    metrics.json carries beside the epochs (a budget's plan, why training stopped).
    """

    model: keras.Model
    steps: Steps
    state: TrainingState
    data: FitData
    config: TrainConfig
    run: RunDir
    model_name: str
    hooks: Hooks = field(default_factory=Hooks)
    distribution: Distribution | None = None
    on_epoch: EpochStart | None = None
    stop_rules: tuple[StopRule, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
