"""What `train_run` settles before the first epoch: the network's steps, the state to
resume, the data to fit, a time budget's plan and the rules that stop a run early.

`Start` holds the settled facts; the functions here derive the rest from it. Nothing here
writes to the run directory (run.py does).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ModelSpecError
from tfcnn.core.presets import tests_every_epoch
from tfcnn.core.rundir import RunDir, RunFinished, read_epoch_records, read_metrics
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.source import class_names_of, load_training_data
from tfcnn.spec import notation
from tfcnn.spec.backbones import is_backbone_spec
from tfcnn.training import budget
from tfcnn.training.batchnorm import batch_norm_layers
from tfcnn.training.checkpoint import (
    TrainingState,
    has_checkpoints,
    make_training_state,
    restore_latest,
)
from tfcnn.training.feeds import make_feeds
from tfcnn.training.loop import FitData, make_steps
from tfcnn.training.photo import BackbonePhases, balanced_class_weights, checkpoint_epoch
from tfcnn.training.recipe import augmentation_of, make_optimizer, photo_augmentation_of
from tfcnn.training.sizing import Head, fit_head
from tfcnn.training.stopping import StopRule, early_stop_rule, first_reason
from tfcnn.training.strategy import Distribution


@dataclass(frozen=True)
class RunInfo:
    """What the caller may want to show before the first epoch."""

    config: TrainConfig
    run_dir: Path
    dataset_source: str
    num_train: int
    num_test: int
    model_name: str
    parameters: int
    resumed_from: str | None
    skipped: list[tuple[str, str]]  # unreadable images left out of a folder dataset
    distribution: str | None = None  # the strategy, described; None: the default (one device)
    chief: bool = True               # False: another worker of a multi-worker run
    num_val: int = 0                 # training images held out for validation (--val-split)
    # Resuming: why an older checkpoint than the newest was used (it was unreadable), or None.
    resume_note: str | None = None
    # Resuming: leftovers of a killed save removed from the run directory.
    cleaned: tuple[str, ...] = ()
    # Image folders: "memory" (decoded before training), "disk" (streamed, cached in RUN/cache)
    # or "stream" (streamed, decoded every epoch); "" for registered datasets.
    cache: str = ""
    head: str = ""  # what was sized to the data (training/sizing.py), or ""
    plan: str = ""  # a time budget's plan (training/budget.py), or ""


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    epochs: list[dict[str, Any]]
    train_seconds: float
    test_accuracy: float | None


def image_shape_of(images: np.ndarray) -> tuple[int, int, int]:
    """(height, width, channels) of a stack of images, grayscale ones given one channel."""
    return (*images.shape[1:3], images.shape[3] if images.ndim == 4 else 1)


def check_model_fits(notation_str: str, dataset: LoadedDataset) -> None:
    """The notation's last layer must give one logit per class, and fit the image size.

    A `keras:NAME` backbone gets a head of one logit per class; only its input size is checked.
    """
    if is_backbone_spec(notation_str):
        notation.check_output_shape(notation_str, image_shape_of(dataset.x_train))
        return
    units = notation.output_units(notation_str)
    classes = len(dataset.class_names)
    if units != classes:
        raise ModelSpecError(f"model {notation_str!r}: the last layer gives {units} outputs, "
                             f"but dataset {dataset.name!r} has {classes} classes "
                             f"(end the notation with D{classes})")
    notation.check_output_shape(notation_str, image_shape_of(dataset.x_train))


def sized_data(config: TrainConfig, model_name: str, notation_str: str,
               dataset: LoadedDataset | None = None
               ) -> tuple[Head, LoadedDataset, list[tuple[str, str]]]:
    """The head sized to the data, the data (loaded unless given) and the unreadable files
    left out. The head is sized, or refused, before any image is decoded: the class count
    is in the folder names."""
    classes = len(dataset.class_names if dataset is not None else class_names_of(config))
    head = fit_head(config, model_name, notation_str, config.dataset, classes)
    skipped: list[tuple[str, str]] = []
    if dataset is None:
        dataset, skipped = load_training_data(config)
    check_model_fits(head.notation, dataset)
    return head, dataset, skipped


@dataclass(frozen=True)
class Start:
    """What train_run settled before training: the settings (seed drawn), the data, the
    network, where the run is and where this process writes, and under what strategy."""

    config: TrainConfig
    run: RunDir
    out: RunDir              # the run directory, or a multi-worker worker's temporary copy
    dataset: LoadedDataset
    skipped: list[tuple[str, str]]
    model_name: str
    notation: str
    dist: Distribution
    resume: bool
    head: Head
    started: float  # time.perf_counter() when train_run began (a time budget's clock)


def new_steps(start: Start, model: keras.Model, image_shape: tuple[int, int, int],
               optimizer: keras.optimizers.Optimizer) -> Any:
    """The compiled steps `start.config` asks for, with `optimizer`."""
    config, dataset = start.config, start.dataset
    weights = (balanced_class_weights(dataset.y_train[:config.limit_train],
                                      len(dataset.class_names))
               if config.class_weight == "balanced" else None)
    return make_steps(model, optimizer, image_shape, start.dist.strategy, seed=config.seed,
                      augmentation=augmentation_of(config),
                      label_smoothing=config.label_smoothing,
                      photo=photo_augmentation_of(config), class_weights=weights)


def steps_and_state(start: Start, model: keras.Model, image_shape: tuple[int, int, int]
                     ) -> tuple[Any, TrainingState, BackbonePhases | None]:
    """The compiled steps, the checkpointed state and a backbone's phases (or None)."""
    config, dataset = start.config, start.dataset
    steps_per_epoch = math.ceil(len(dataset.y_train[:config.limit_train]) / config.batch_size)

    def steps_for(optimizer: keras.optimizers.Optimizer) -> Any:
        return new_steps(start, model, image_shape, optimizer)

    phases = BackbonePhases.of(model, config, steps_per_epoch, make_optimizer, steps_for,
                               start.out.checkpoints)
    # A resumed backbone run starts in the phase its checkpoint was saved in (the optimizer's
    # variables are that phase's); fit changes the phase where the uninterrupted run did.
    if phases is not None:
        optimizer = phases.optimizer_for(
            checkpoint_epoch(start.run.checkpoints) if start.resume else 0)
    else:
        optimizer = make_optimizer(config, steps_per_epoch)
    steps = steps_for(optimizer)
    return steps, make_training_state(start.out.checkpoints, model, optimizer,
                                      steps.train_metrics), phases


def restore(start: Start, state: TrainingState
             ) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """Resuming: load the newest intact checkpoint into `state`; (its path, a note on an
    unreadable newer one, the epoch records so far). Every worker reads the chief's."""
    if not (start.resume and has_checkpoints(start.run.checkpoints)):
        return None, None, []
    resumed_from, note = restore_latest(state, start.run.checkpoints)
    # metrics.json may be one epoch ahead if a kill came between it and the checkpoint.
    records = [r for r in read_epoch_records(start.run) if r["epoch"] <= int(state.epoch.numpy())]
    return resumed_from, note, records


def check_unfinished(start: Start, state: TrainingState, rules: tuple[StopRule, ...],
                      records: list[dict[str, Any]]) -> None:
    """RunFinished when a resumed run has nothing left to do: its epochs all trained (or a
    stop rule ended it) and, with a validation split, its final test written."""
    if not start.resume:
        return
    done = int(state.epoch.numpy())
    metrics = read_metrics(start.run)
    stopped = first_reason(rules, records) or metrics.get("stopped", {}).get("reason")
    if done < start.config.epochs and not stopped:
        return
    if start.dataset.y_val is not None and "best_epoch" not in metrics:
        return  # killed before the final test pass: fit does it
    raise RunFinished(start.run.path, done, start.config.epochs, stopped=stopped)


def fit_data(config: TrainConfig, dataset: LoadedDataset) -> FitData:
    train_n, test_n = config.limit_train, config.limit_test
    return FitData(dataset.x_train[:train_n], dataset.y_train[:train_n],
                   dataset.x_test[:test_n], dataset.y_test[:test_n],
                   dataset.x_val, dataset.y_val)


def planned(start: Start, model: keras.Model, image_shape: tuple[int, int, int],
             data: FitData) -> tuple[Start, budget.Plan | None]:
    """With a time budget, a new run's epochs planned from its measured speed (budget.py):
    `start` with the planned epochs, and the plan. A resumed run keeps its config's."""
    config = start.config
    if not config.time_budget or (start.resume and has_checkpoints(start.run.checkpoints)):
        return start, None
    steps_per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    probe = new_steps(start, model, image_shape, make_optimizer(config, steps_per_epoch))
    feeds = make_feeds(data, config, start.dist if start.dist.strategy is not None else None)
    speed = budget.measure_speed(model, probe, feeds, config.batch_size, config.seed or 0,
                                 config.steps_per_call, config.time_budget)
    plan = budget.plan_for(speed, config.time_budget, time.perf_counter() - start.started,
                           data, feeds.steps_per_epoch, config.epochs,
                           tests_every_epoch(config), bool(batch_norm_layers(model)))
    return dataclasses.replace(start, config=config.replace(epochs=plan.epochs)), plan


def stop_rules(start: Start, plan: budget.Plan | None) -> tuple[StopRule, ...]:
    rules = [rule for rule in (early_stop_rule(start.config.early_stop),) if rule]
    if plan is not None:
        guard = budget.BudgetGuard(plan, start.started)
        rules.append(lambda records: guard.reason(records, plan.epochs))
    return tuple(rules)
