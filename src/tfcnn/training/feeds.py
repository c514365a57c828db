"""What one training run feeds its steps: the arrays (`FitData`) as tf.data batches for
training, testing and validation, placed on a strategy's devices when there is one."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.data import pipeline
from tfcnn.training.strategy import Distribution, distribute_dataset


@dataclass
class FitData:
    """A run's arrays: training images and labels, test ones, and validation ones if any."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None  # with a validation set, the test set is used once, at the end
    y_val: np.ndarray | None = None


@dataclass
class Feeds:
    """The batches one run trains and tests on, and how many steps make an epoch."""

    train_pairs: Any
    test: Any                    # None: no test images
    val: Any                     # None: no validation split
    steps_per_epoch: int
    shuffle_buffer: int
    feed: Callable[[Any], Any]   # puts a dataset on the strategy's devices (or leaves it)
    distributed: bool            # under a tf.distribute strategy

    def train_batches(self, config: TrainConfig, epoch: int, skip: int) -> Any:
        return self.feed(pipeline.train_batches(self.train_pairs, config.batch_size,
                                                self.shuffle_buffer, config.seed, epoch, skip))


def make_feeds(data: FitData, config: TrainConfig,
               distribution: Distribution | None) -> Feeds:
    """The run's batches: shuffled training batches per epoch, test and validation ones."""
    strategy = distribution.strategy if distribution else None

    def feed(batches: tf.data.Dataset) -> Any:
        return batches if strategy is None else distribute_dataset(strategy, batches)

    def held_out(images: np.ndarray | None, labels: np.ndarray | None) -> Any:
        if labels is None or not len(labels):
            return None
        return feed(pipeline.eval_batches(pipeline.array_dataset(images, labels),
                                          config.eval_batch_size))

    steps_per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    if strategy is not None and 0 < len(data.y_train) % config.batch_size < distribution.replicas:
        # A last batch smaller than the replica count leaves a replica with no images, and
        # batch-norm statistics of nothing are NaN: that batch (< replicas images) is left out.
        steps_per_epoch -= 1
    return Feeds(pipeline.array_dataset(data.x_train, data.y_train),
                  held_out(data.x_test, data.y_test), held_out(data.x_val, data.y_val),
                  steps_per_epoch,
                  config.shuffle_buffer or pipeline.default_shuffle_buffer(len(data.y_train)),
                  feed, strategy is not None)
