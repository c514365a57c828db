"""Starting and resuming a training run: data, model, run directory, then the loop.

`train_run(config, run_path, hooks)` is what `tfcnn train` calls. With `resume=True` it
reads the state from the run directory's latest checkpoint and continues; with the same
seed, the result is bit-for-bit the one an uninterrupted run gives on the CPU.
Under a tf.distribute strategy (strategy.py) every worker calls it alike; the chief writes
the run directory, the others a temporary copy that is removed at the end.
"""

from __future__ import annotations

import errno
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ModelSpecError, RunDirError, TrainingInterrupted
from tfcnn.core.presets import adam_betas
from tfcnn.core.rundir import (
    RunDir,
    clean_stale_temp_files,
    library_versions,
    read_epoch_records,
    write_config,
)
from tfcnn.data.augment import Augmentation
from tfcnn.data.files import ImageFiles
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.photo_augment import PhotoAugmentation
from tfcnn.data.source import load_training_data
from tfcnn.models.network import build_model
from tfcnn.spec import notation
from tfcnn.spec.backbones import is_backbone_spec
from tfcnn.training.checkpoint import has_checkpoints, make_training_state, restore_latest
from tfcnn.training.loop import FitData, Hooks, fit, make_steps
from tfcnn.training.photo import BackbonePhases, balanced_class_weights, checkpoint_epoch
from tfcnn.training.strategy import Distribution, create_distribution


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
    # or "none" (streamed, decoded every epoch); "" for registered datasets.
    cache: str = ""


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


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | Any:
    """Adam's learning rate: a constant, or a one-cycle or cosine schedule over the whole run.

    One-cycle here: linear warm-up from lr/25 to lr over `warmup` of the steps, then cosine
    decay to 0 (the shape of PyTorch's OneCycleLR with its default div_factor of 25).
    Cosine: from lr straight down to 0. The schedules read the optimizer's step count, which
    checkpoints keep, so a resumed run continues on the same curve (if --epochs is not changed).
    """
    if config.schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=max(1, total))
    warmup = int(config.warmup * total)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.lr / 25, decay_steps=max(1, total - warmup),
        warmup_target=config.lr, warmup_steps=warmup)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (the tutorial's), or AdamW when a weight decay is set (decay not applied to BN).

    With `config.ema` the optimizer also keeps a moving average of the weights (averaging.py).
    """
    rate = learning_rate(config, steps_per_epoch)
    beta_1, beta_2 = adam_betas(config)
    settings = {"beta_1": beta_1, "beta_2": beta_2}
    if config.ema:
        settings.update(use_ema=True, ema_momentum=config.ema)
    if not config.weight_decay:
        return keras.optimizers.Adam(learning_rate=rate, **settings)
    optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.weight_decay,
                                       **settings)
    # Decaying batch-norm scales and shifts and biases only fights the normalisation.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def augmentation_of(config: TrainConfig) -> Augmentation:
    """The affine/elastic/erasing augmentation; the flip goes to the crop when there is one
    (photo_augmentation_of), so a photo is resampled once for both."""
    return Augmentation(shift=config.shift, rotate=config.rotate, zoom=config.zoom,
                        hflip=config.hflip and not config.crop_area, erase=config.erase,
                        elastic=config.elastic, elastic_sigma=config.elastic_sigma)


def photo_augmentation_of(config: TrainConfig) -> PhotoAugmentation:
    """Crop (with the flip), colour jitter and mixing (data/photo_augment.py)."""
    return PhotoAugmentation(crop_area=config.crop_area,
                             hflip=config.hflip and config.crop_area > 0,
                             brightness=config.brightness, contrast=config.contrast,
                             saturation=config.saturation, hue=config.hue, mixup=config.mixup,
                             cutmix=config.cutmix)


def train_run(config: TrainConfig, run_path: Path, hooks: Hooks, *, resume: bool = False,
              on_start: Callable[[RunInfo], None] | None = None,
              dataset: LoadedDataset | None = None,
              distribution: Distribution | None = None) -> RunResult:
    """Train `config` into `run_path` (new, or resumed from its checkpoints).

    `distribution`: the strategy to train under; None creates the one `config.strategy` asks
    for (create it first for multi-worker: it must precede TensorFlow's device set-up).
    """
    model_name, notation_str = notation.resolve_model(config.model)
    dist = distribution or create_distribution(config.strategy)
    if config.seed is None:
        config = config.replace(seed=dist.chief_seed(secrets.randbelow(2**31)))
    skipped: list[tuple[str, str]] = []
    if dataset is None:
        dataset, skipped = load_training_data(config)
    check_model_fits(notation_str, dataset)

    run = RunDir(run_path)
    out = RunDir(dist.worker_dir(run.path))  # where this process writes
    if not resume and dist.chief and run.config.exists():
        raise RunDirError(f"{run.path}: already holds a run (use --resume {run.path} "
                          "to continue it, or choose another --out)")
    try:
        with dist.worker_errors(run.path), dist.scope():
            return _train(config, run, out, hooks, resume, on_start, dataset, skipped,
                          model_name, notation_str, dist)
    except (OSError, tf.errors.OpError) as exc:
        if not is_disk_full(exc):
            raise
        raise RunDirError(disk_full_message(exc, out.path, run.path)) from None
    except TrainingInterrupted as exc:
        if dist.chief:
            raise
        raise TrainingInterrupted(f"interrupted with the other workers; the chief saved a "
                                  f"checkpoint; continue with: tfcnn train --resume {run.path}",
                                  exc.exit_code - 128) from None
    finally:
        dist.remove_worker_dir(out.path)


def _build_model(config: TrainConfig, notation_str: str, image_shape: tuple[int, int, int],
                 dataset: LoadedDataset) -> keras.Model:
    """A notation model, or a `keras:NAME` backbone with a new head (its `--weights`)."""
    preprocessing = "mnist" if dataset.name == "mnist" else "scale"
    if is_backbone_spec(notation_str):
        from tfcnn.models.backbones import build_backbone_model

        return build_backbone_model(notation_str, image_shape, dataset.class_names,
                                    config.seed, weights=config.weights,
                                    preprocessing=preprocessing, dataset=dataset.name,
                                    precision=config.precision)
    return build_model(notation_str, image_shape, dataset.class_names, config.seed,
                       preprocessing=preprocessing, dataset=dataset.name,
                       precision=config.precision)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError or TensorFlow error that says the disk (or quota) is full."""
    return (getattr(exc, "errno", None) in _DISK_FULL
            or any(text in str(exc) for text in _DISK_FULL_TEXT))


def disk_full_message(exc: BaseException, where: Path, run_path: Path) -> str:
    """One line: the file that could not be written, and how to continue."""
    path = getattr(exc, "filename", None)
    if not path:  # TensorFlow names the file in its message: "PATH; No space left on device"
        found = re.search(r"(\S+); (?:" + "|".join(_DISK_FULL_TEXT) + ")", str(exc))
        path = found.group(1) if found else where
    return (f"{path}: no space left on device while saving; what was saved before is intact: "
            f"free some space, then continue with: tfcnn train --resume {run_path}")


def _cache_of(config: TrainConfig, dataset: LoadedDataset) -> str:
    """Where the run keeps a folder's decoded images (RunInfo.cache)."""
    if not dataset.name.startswith("folder:"):
        return ""
    if not isinstance(dataset.x_train, ImageFiles):
        return "memory"
    return "disk" if config.cache == "disk" else "none"


def _train(config: TrainConfig, run: RunDir, out: RunDir, hooks: Hooks, resume: bool,
           on_start: Callable[[RunInfo], None] | None, dataset: LoadedDataset,
           skipped: list[tuple[str, str]], model_name: str, notation_str: str,
           dist: Distribution) -> RunResult:
    """train_run's work, in the strategy's scope; this process writes to `out`."""
    out.path.mkdir(parents=True, exist_ok=True)
    # Leftovers of a kill -9 in the middle of a save (the chief's directory only).
    cleaned = tuple(clean_stale_temp_files(run)) if resume and dist.chief else ()
    write_config(out, config, library_versions())
    image_shape = image_shape_of(dataset.x_train)
    model = _build_model(config, notation_str, image_shape, dataset)
    steps_per_epoch = math.ceil(len(dataset.y_train[:config.limit_train]) / config.batch_size)
    weights = (balanced_class_weights(dataset.y_train[:config.limit_train],
                                      len(dataset.class_names))
               if config.class_weight == "balanced" else None)

    def new_steps(optimizer: keras.optimizers.Optimizer) -> Any:
        return make_steps(model, optimizer, image_shape, dist.strategy, seed=config.seed,
                          augmentation=augmentation_of(config),
                          label_smoothing=config.label_smoothing,
                          photo=photo_augmentation_of(config), class_weights=weights)

    phases = BackbonePhases.of(model, config, steps_per_epoch, make_optimizer, new_steps,
                               out.checkpoints)
    # A resumed backbone run starts in the phase its checkpoint was saved in (the optimizer's
    # variables are that phase's); fit changes the phase where the uninterrupted run did.
    if phases is not None:
        optimizer = phases.optimizer_for(checkpoint_epoch(run.checkpoints) if resume else 0)
    else:
        optimizer = make_optimizer(config, steps_per_epoch)
    steps = new_steps(optimizer)
    state = make_training_state(out.checkpoints, model, optimizer, steps.train_metrics)
    resumed_from = resume_note = None
    records: list[dict[str, Any]] = []
    # Every worker resumes from the chief's checkpoints (the others' own are temporary).
    if resume and has_checkpoints(run.checkpoints):
        resumed_from, resume_note = restore_latest(state, run.checkpoints)
        # metrics.json may be one epoch ahead if a kill came between it and the checkpoint.
        records = [r for r in read_epoch_records(run) if r["epoch"] <= int(state.epoch.numpy())]
    dist.check_same_start(int(state.epoch.numpy()), int(state.step.numpy()), run.path)

    train_n, test_n = config.limit_train, config.limit_test
    data = FitData(dataset.x_train[:train_n], dataset.y_train[:train_n],
                   dataset.x_test[:test_n], dataset.y_test[:test_n],
                   dataset.x_val, dataset.y_val)
    if on_start:
        on_start(RunInfo(config, run.path, dataset.source, len(data.y_train), len(data.y_test),
                         model_name, model.count_params(), resumed_from, skipped,
                         None if dist.strategy is None else dist.describe(), dist.chief,
                         0 if data.y_val is None else len(data.y_val), resume_note, cleaned,
                         _cache_of(config, dataset)))
    records, test_accuracy = fit(model, steps, state, data, config, out, model_name, records,
                                 hooks, dist if dist.strategy is not None else None,
                                 on_epoch=phases.on_epoch if phases else None)
    return RunResult(run.path, records, float(state.seconds.numpy()), test_accuracy)
