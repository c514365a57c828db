"""`tfcnn show`: a labelled grid of training images as the network sees them.

Every stage is the training run's own: the dataset from `data.source.load_training_data`,
the limit and split of `training.start.fit_data`, epoch 1's shuffled, scaled batches from
`training.feeds.make_feeds`, and the training step's augmentation,
`training.steps.augment_batch` (then `mix_batch` with mixup or cutmix), seeded as the step
seeds it, `step_seed(seed, step)`. So with the same settings and seed, the grid holds the
first `count` images of a new run's first steps, warped exactly as that run warps them.
`augmented_batch` returns those images as numpy arrays; `show_batch` draws them, one cell
each titled with its class name; `save_batch` writes the PNG. TensorFlow is imported
inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.core.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_COUNT = 256  # a grid of 16 x 16 cells is still legible at 1.5 in a cell
CELL_INCHES = 1.5
DPI = 100


@dataclass(frozen=True)
class Batch:
    """Training images after augmentation, as the network gets them.

    `images` float32 (N, H, W, C) in [0, 1]; `labels` the class of each image; with
    mixup/cutmix, `partners` the class mixed in and `weights` the share of the image's own
    label (1.0 and its own class when not mixed).
    """

    images: np.ndarray
    labels: np.ndarray
    partners: np.ndarray
    weights: np.ndarray
    class_names: tuple[str, ...]
    config: TrainConfig

    def title(self, i: int) -> str:
        """Cell `i`'s title: its class name (and the class mixed into it, with shares)."""
        own = self.class_names[int(self.labels[i])]
        weight = float(self.weights[i])
        # Shown as 100%, or mixed with its own class: the label is the image's class.
        if weight >= 1.0 - 5e-3 or self.partners[i] == self.labels[i]:
            return own
        partner = self.class_names[int(self.partners[i])]
        return f"{own} {weight:.0%}\n+ {partner} {1 - weight:.0%}"


def training_settings(config: TrainConfig | Mapping[str, Any] | None = None,
                      **settings: Any) -> TrainConfig:
    """The `TrainConfig` for `config` (a TrainConfig, or a dict of settings with a preset
    applied as `tfcnn.train` applies it) with the keyword settings over it."""
    from tfcnn.api.training import training_config

    if config is None or isinstance(config, Mapping):
        return training_config({**(config or {}), **settings})
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config: expected a TrainConfig or a dict of settings, got "
                          f"{type(config).__name__}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown := sorted(set(settings) - fields):
        raise ConfigError(f"{', '.join(unknown)}: unknown setting(s) (expected TrainConfig "
                          "fields such as dataset, shift, crop_area)")
    return config.replace(**{k: v for k, v in settings.items() if v is not None})


def augmented_batch(config: TrainConfig | Mapping[str, Any] | None = None, *,
                    count: int = 16, seed: int | None = None, **settings: Any) -> Batch:
    """The first `count` training images of a run of `config` (and `settings`) with seed
    `seed` (default: the config's, else 0), after the training step's augmentation."""
    config = training_settings(config, **settings)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"count: expected an integer from 1 to {MAX_COUNT}, got {count!r}")
    seed = seed if seed is not None else config.seed if config.seed is not None else 0
    config = config.replace(seed=seed)
    from tfcnn.data.source import check_dataset_setting

    check_dataset_setting(config)  # a typo fails before TensorFlow loads
    return _first_batches(config, count)


def _first_batches(config: TrainConfig, count: int) -> Batch:
    from tfcnn.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    from tfcnn.data.augment import step_seed
    from tfcnn.data.photo_augment import mix_batch
    from tfcnn.data.source import load_training_data
    from tfcnn.training.feeds import make_feeds
    from tfcnn.training.recipe import augmentation_of, photo_augmentation_of
    from tfcnn.training.start import fit_data
    from tfcnn.training.steps import augment_batch

    dataset, _ = load_training_data(config)
    feeds = make_feeds(fit_data(config, dataset), config, None)
    augmentation, photo = augmentation_of(config), photo_augmentation_of(config)
    parts: list[tuple[Any, ...]] = []
    seed = config.seed or 0
    for step, (images, labels) in enumerate(feeds.train_batches(config, 1, 0)):
        step_seed_now = step_seed(seed, step)  # the optimizer's step count at that step
        images = augment_batch(images, step_seed_now, augmentation, photo)
        partners, weights = labels, tf.ones([tf.shape(labels)[0]])
        if photo.mixing:  # as the step's mixed(): pairs from this very batch
            images, partners, weights = mix_batch(images, labels, step_seed_now, photo)
        parts.append(tuple(np.asarray(t) for t in (images, labels, partners, weights)))
        if sum(len(part[1]) for part in parts) >= count:
            break
    if not parts:
        raise ConfigError(f"{config.dataset}: no training images to show")
    images, labels, partners, weights = (np.concatenate(column)[:count]
                                         for column in zip(*parts, strict=True))
    return Batch(images.astype(np.float32), labels, partners, weights.astype(np.float32),
                 tuple(dataset.class_names), config)


def describe_settings(config: TrainConfig) -> str:
    """The augmentation settings that differ from the defaults ("shift=2, hflip"), or "none"."""
    defaults = TrainConfig()
    given = []
    for name, setting in SETTINGS.items():
        value = getattr(config, name)
        if setting.group != "augmentation" or value == getattr(defaults, name):
            continue
        if value is True:
            given.append(name)
        else:
            given.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(given) or "none"


def batch_figure(batch: Batch) -> Figure:
    """A grid of the batch's images, each titled with its class name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(batch.images)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(columns * CELL_INCHES, rows * (CELL_INCHES + 0.15) + 0.5), dpi=DPI,
                 layout="constrained")
    grey = batch.images.shape[-1] == 1
    for i, axes in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if i >= count:
            continue
        image = batch.images[i, ..., 0] if grey else batch.images[i]
        axes.imshow(np.clip(image, 0.0, 1.0), cmap="gray" if grey else None, vmin=0.0,
                    vmax=1.0, interpolation="nearest")
        axes.set_title(batch.title(i), fontsize=8)
    c = batch.config
    dataset = (f"folder:{Path(c.dataset[len('folder:'):]).name}"
               if c.dataset.startswith("folder:") else c.dataset)
    title = (f"{dataset}: {count} training image{'s' if count > 1 else ''}, seed {c.seed}; "
             f"augmentation: {describe_settings(c)}")
    # About 13 characters of 9-point text to an inch: wrapped to stay inside the figure.
    fig.suptitle(textwrap.fill(title, max(30, int(columns * CELL_INCHES * 13))), fontsize=9)
    FigureCanvasAgg(fig)  # renders with Agg, whatever pyplot uses
    return fig


def show_batch(config: TrainConfig | Mapping[str, Any] | None = None, *, count: int = 16,
               seed: int | None = None, **settings: Any) -> Figure:
    """A matplotlib figure of the first `count` training images a run of `config` (a
    TrainConfig or a dict of settings; keyword settings such as `dataset`, `shift`,
    `preset` over it) would feed its network, after augmentation, each titled with its
    class name. `seed` (default: the config's, else 0) seeds the shuffle and the
    augmentation as a run with that seed does. A notebook shows the figure inline.

    Example:
        >>> figure = show_batch(dataset="mnist", data_dir=data_dir, limit_train=500,
        ...                     shift=2.0, rotate=10.0, count=8, seed=1)
        >>> titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
        >>> len(titles), set(titles) <= set("0123456789")
        (8, True)
    """
    return batch_figure(augmented_batch(config, count=count, seed=seed, **settings))


def save_batch(path: str | os.PathLike[str], config: TrainConfig | Mapping[str, Any] | None
               = None, *, count: int = 16, seed: int | None = None,
               **settings: Any) -> Path:
    """`show_batch(config, count=..., seed=..., **settings)` written as a PNG at `path`
    (atomically); returns the path."""
    from tfcnn.evaluation.plots import save_figure

    return save_figure(show_batch(config, count=count, seed=seed, **settings), path)
