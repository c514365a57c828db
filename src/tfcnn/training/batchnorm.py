"""Batch-norm statistics a short run can trust: recomputed on the training images.

Keras's moving statistics start at mean 0, variance 1 and move by 1% a step (momentum 0.99),
so after n steps the starting values still weigh 0.99^n (64% after 45 steps), and in a short
run at a high learning rate they also lag behind the changing network. A model trained on
90 folder images (45 steps) reported 97-100% training accuracy but scored 56-72% on the
same images in inference mode (what predict, evaluate and serve use); two MNIST epochs at
batch 256 (470 steps, lr 0.01) tested at 98.45-98.92%, and 99.24-99.31% with recomputed
statistics. In a run shorter than `settled_steps()` (688 at momentum 0.99), every
batch-norm layer's statistics are therefore recomputed from the training images in file
order (the "precise BN" of Wu & Johnson, 2021): the mean of the per-batch means and
variances, layer by layer as the images pass through in training mode.

That is done for each epoch's test (or validation) pass and model.keras. Done after the last
epoch only, a 90-image folder tested at 44-56% through eleven epochs while its training
accuracy rose to 100%, then at 89%; the recomputation costs 9-13% of an epoch of a short
MNIST run (docs/benchmarks.md). Before the last epoch the moving averages training goes on
from are put back afterwards, exactly, so the run trains as one that never recomputed and
resumes bit for bit; after the last they stay. Longer runs keep their statistics (and their
results) as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import keras
import numpy as np

from tfcnn.data import pipeline

# 0.99 ** 688 < 0.1%: from here on the starting values weigh less than 0.1% in the statistics.
# (The tutorial's 9,375 steps, the fast and best presets' 938 and 11,256 are all beyond it.)
SETTLED_WEIGHT = 0.001
# Large batches give per-batch variances close to the population's (batch 2 would halve a
# dense layer's); 16 of them are plenty for the means and cost ~0.3 s for a small network.
RECOMPUTE_BATCH = 256
RECOMPUTE_IMAGES = 16 * RECOMPUTE_BATCH


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every batch-norm layer of `model`, in call order."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def needs_recompute(model: keras.Model, total_steps: int) -> bool:
    """True when `model` has batch norm whose starting statistics still weigh >= 0.1%.

    Never for a backbone with pretrained statistics (`frozen_statistics`): they are kept.
    """
    if getattr(model, "frozen_statistics", False):
        return False
    layers = batch_norm_layers(model)
    return bool(layers) and any(
        layer.momentum ** total_steps >= SETTLED_WEIGHT for layer in layers)


def settled_steps(momentum: float = 0.99) -> int:
    """The fewest training steps after which the starting statistics weigh < 0.1%."""
    return math.ceil(math.log(SETTLED_WEIGHT) / math.log(momentum))


def recompute_statistics(model: keras.Model, images: np.ndarray,
                         limit: int = RECOMPUTE_IMAGES) -> int:
    """Set the batch-norm statistics of `model` from up to `limit` training `images` (uint8).

    Each layer's moving mean and variance become the image-weighted mean of its batch
    statistics: a momentum of seen/(seen + n) per batch of n makes Keras's own update an
    exact running average. Dropout is off meanwhile. Returns the number of images used.
    """
    layers = batch_norm_layers(model)
    if not layers or not len(images):
        return 0
    images = images[:limit]
    dropouts = [layer for layer in model._flatten_layers(include_self=False)
                if isinstance(layer, keras.layers.Dropout)]
    momenta = [layer.momentum for layer in layers]
    rates = [layer.rate for layer in dropouts]
    labels = np.zeros(len(images), dtype=np.int32)
    batches = pipeline.eval_batches(pipeline.array_dataset(images, labels), RECOMPUTE_BATCH)
    seen = 0
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for batch, _ in batches:
            n = int(batch.shape[0])
            for layer in layers:
                layer.momentum = seen / (seen + n)
            model(batch, training=True)  # eager: each call reads the momentum just set
            seen += n
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate
    return seen


@contextmanager
def recomputed_statistics(model: keras.Model, images: np.ndarray, total_steps: int, *,
                          keep: bool, note: Callable[[str], None] | None = None,
                          skip: bool = False) -> Iterator[None]:
    """Within the block, a short run's model holds batch-norm statistics recomputed from
    the training `images`; nothing changes in a long run, a model without batch norm, or
    with `skip` (a tf.distribute run: its replicas' statistics are left alone).

    Without `keep` the moving averages come back after the block, exactly; with it (after
    the last epoch) the recomputed statistics stay. `note` hears how many images were used.
    """
    if skip or not needs_recompute(model, total_steps):
        yield
        return
    moving = [v for layer in batch_norm_layers(model)
              for v in (layer.moving_mean, layer.moving_variance)]
    saved = [v.numpy() for v in moving]
    used = recompute_statistics(model, images)
    if note:
        note(f"batch-norm statistics recomputed on {used:,} training images for each epoch's "
             f"test and model.keras (a short run: {total_steps} steps, under the "
             f"{settled_steps()} the moving averages need)")
    try:
        yield
    finally:
        if not keep:
            for variable, value in zip(moving, saved, strict=True):
                variable.assign(value)
