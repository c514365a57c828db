"""What one training run feeds its steps: the arrays (`FitData`) as tf.data batches for
training, testing and validation, placed on a strategy's devices when there is one.

An image folder's images may be `ImageFiles` streamed from disk: decoded per epoch, or
with `--cache disk` once into files under the run's `cache/` folder."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.data import pipeline
from tfcnn.data.files import ImageFiles
from tfcnn.training.strategy import Distribution, distribute_dataset


@dataclass
class FitData:
    """A run's arrays: training images and labels, test ones, and validation ones if any."""

    x_train: Any  # uint8 arrays, or ImageFiles (tfcnn.data.files) streamed from disk
    y_train: np.ndarray
    x_test: Any
    y_test: np.ndarray
    x_val: Any = None  # with a validation set, the test set is used once, at the end
    y_val: np.ndarray | None = None

    def decode_failures(self) -> list[tuple[str, str]]:
        """(file, reason) of streamed files that failed to decode so far (fed black)."""
        return pipeline.failures_of(self.x_train, self.x_test, self.x_val)


@dataclass
class Feeds:
    """The batches one run trains and tests on, and how many steps make an epoch."""

    train_examples: pipeline.TrainExamples
    test: Any                    # None: no test images
    val: Any                     # None: no validation split
    steps_per_epoch: int
    shuffle_buffer: int
    feed: Callable[[Any], Any]   # puts a dataset on the strategy's devices (or leaves it)
    distributed: bool            # under a tf.distribute strategy
    reported: list[tuple[str, str]] = field(default_factory=list)  # decode failures told

    def train_batches(self, config: TrainConfig, epoch: int, skip: int) -> Any:
        return self.feed(pipeline.train_batches(self.train_examples, config.batch_size,
                                                self.shuffle_buffer, config.seed, epoch, skip))


def make_feeds(data: FitData, config: TrainConfig,
               distribution: Distribution | None, cache_dir: Path | None = None) -> Feeds:
    """The run's batches: shuffled training batches per epoch, test and validation ones.

    With `config.cache == "disk"`, streamed images are cached in `cache_dir`.
    """
    strategy = distribution.strategy if distribution else None

    def feed(batches: tf.data.Dataset) -> Any:
        return batches if strategy is None else distribute_dataset(strategy, batches)

    def cache(part: str, images: Any) -> Path | None:
        if config.cache != "disk" or cache_dir is None or not isinstance(images, ImageFiles):
            return None
        return pipeline.cache_file(cache_dir, part, images)

    def held_out(part: str, images: Any, labels: np.ndarray | None) -> Any:
        if labels is None or not len(labels):
            return None
        return feed(pipeline.eval_batches(
            pipeline.array_dataset(images, labels, cache(part, images)), config.eval_batch_size))

    steps_per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    if strategy is not None and 0 < len(data.y_train) % config.batch_size < distribution.replicas:
        # A last batch smaller than the replica count leaves a replica with no images, and
        # batch-norm statistics of nothing are NaN: that batch (< replicas images) is left out.
        steps_per_epoch -= 1
    return Feeds(pipeline.train_examples(data.x_train, data.y_train,
                                         cache("train", data.x_train)),
                  held_out("test", data.x_test, data.y_test),
                  held_out("val", data.x_val, data.y_val),
                  steps_per_epoch,
                  config.shuffle_buffer or pipeline.default_shuffle_buffer(len(data.y_train)),
                  feed, strategy is not None)
