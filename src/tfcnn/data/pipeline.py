"""tf.data pipelines from in-memory uint8 arrays: shuffle, batch, scale to [0, 1], prefetch.

Images stay uint8 in memory (a quarter of float32's size) and are scaled per batch.
The training order of an epoch depends only on (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def epoch_seed(seed: int, epoch: int) -> int:
    """A shuffle seed for one epoch, derived from the run's seed alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint32)[0])


def default_shuffle_buffer(num_train: int) -> int:
    """The tutorial's shuffle buffer: a quarter of the training set."""
    return max(1, num_train // 4)


# Fixed, small parallelism and prefetch depth, with tf.data's autotuner off. With AUTOTUNE, many
# training epochs of this loop stalled (20-40% slower): a starved phase ended only on the
# autotuner's next run, which comes at 10 ms x (2^k - 1) after the iterator starts (its period
# doubles), so stalled phases lasted exactly 20.47 s, 40.95 s or 81.91 s.
# Scaling a uint8 batch is cheap: two parallel calls and two prefetched batches keep the
# model fed on any core count (docs/benchmarks.md, "The slow epochs").
_PARALLEL_CALLS = 2
_PREFETCH_BATCHES = 2


def _without_autotune(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` scaled to [0, 1] and prefetched, with fixed settings instead of AUTOTUNE."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return (batches.map(_scale, num_parallel_calls=_PARALLEL_CALLS)
            .prefetch(_PREFETCH_BATCHES).with_options(options))


def _scale(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    images = tf.cast(images, tf.float32) / 255.0
    return images[..., tf.newaxis] if images.shape.rank == 3 else images, labels


def array_dataset(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """Unbatched (image, label) pairs; built once and reused by every epoch."""
    return tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))


def train_batches(pairs: tf.data.Dataset, batch_size: int, shuffle_buffer: int, seed: int,
                  epoch: int, skip_batches: int = 0) -> tf.data.Dataset:
    """One epoch of shuffled training batches; `skip_batches` resumes mid-epoch."""
    batches = (pairs.shuffle(shuffle_buffer, seed=epoch_seed(seed, epoch),
                             reshuffle_each_iteration=False)
               .batch(batch_size))
    if skip_batches:
        batches = batches.skip(skip_batches)
    return _without_autotune(batches)


def eval_batches(pairs: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Test batches in file order."""
    return _without_autotune(pairs.batch(batch_size))
