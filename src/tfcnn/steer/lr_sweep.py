"""The range test's training (steer/lr_find.py): the network, data, augmentation and
compiled step `tfcnn train` would use for the same settings, one batch a step at the rate
each step asks for. TensorFlow is imported by whoever imports this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.core.rundir import RunDir
from tfcnn.spec import notation
from tfcnn.training.feeds import make_feeds
from tfcnn.training.recipe import make_optimizer
from tfcnn.training.run import build_run_model  # train_run's own builder
from tfcnn.training.start import Start, fit_data, image_shape_of, new_steps, sized_data
from tfcnn.training.strategy import create_distribution


def _start(config: TrainConfig) -> Start:
    """What train_run settles first, for `config`: the sized head, the data, the strategy
    (no run directory is written: the test keeps nothing but its record)."""
    started = time.perf_counter()
    model_name, written = notation.resolve_model(config.model)
    dist = create_distribution(config.strategy)
    if dist.multi_worker:
        raise ConfigError("strategy: the range test runs in one process, not multi-worker")
    head, dataset, skipped = sized_data(config, model_name, written)
    nowhere = RunDir(Path("lr-find-writes-no-run"))
    return Start(config, nowhere, nowhere, dataset, skipped, model_name, head.notation, dist,
                 False, head, started)


def sweep(config: TrainConfig, lrs: Sequence[float],
          stop: Callable[[list[float]], bool]) -> list[float]:
    """Each step's batch loss at `lrs[step]`, from the fresh network, until `stop(losses)`
    says so or the rates run out (epochs of the training set follow each other, each
    shuffled as training shuffles it)."""
    start = _start(config)
    data = fit_data(config, start.dataset)
    feeds = make_feeds(data, config, start.dist if start.dist.strategy is not None else None)
    image_shape = image_shape_of(data.x_train)
    with start.dist.scope():
        model = build_run_model(config, start.notation, image_shape, start.dataset)
        # A constant rate that each step sets; the optimizer is otherwise the run's.
        optimizer = make_optimizer(config.replace(schedule="constant", lr=lrs[0], ema=0.0),
                                   feeds.steps_per_epoch)
        steps = new_steps(start, model, image_shape, optimizer)
    loss_metric = steps.train_metrics[0]
    one = tf.constant(1, dtype=tf.int64)
    losses: list[float] = []
    epoch, batches, in_epoch = 1, iter(feeds.train_batches(config, 1, 0)), 0
    for lr in lrs:
        if in_epoch == feeds.steps_per_epoch:
            epoch, in_epoch = epoch + 1, 0
            batches = iter(feeds.train_batches(config, epoch, 0))
        optimizer.learning_rate = lr
        loss_metric.reset_state()
        steps.train(batches, one)
        in_epoch += 1
        losses.append(float(loss_metric.result()))
        if not math.isfinite(losses[-1]) or stop(losses):
            break
    return losses
