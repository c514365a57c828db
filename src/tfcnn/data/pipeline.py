"""tf.data pipelines from uint8 images: shuffle, batch, scale to [0, 1], prefetch.

Images are in-memory uint8 arrays (a quarter of float32's size), or image files streamed
from disk (`tfcnn.data.files.ImageFiles`), decoded in parallel by the one image decoder and
optionally cached on disk (`cache_file`). Scaling is per batch. The training order of an
epoch depends only on (seed, epoch), and is the same for files as for their decoded array
(tf.data's shuffle permutes positions, whatever they hold): streamed files are shuffled as
paths and decoded after, so the shuffle buffer holds names, not pixels. A resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfcnn.data.files import ImageFiles
from tfcnn.images.preprocessor import scale_pixels


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
    # The model's own Preprocessor scales through the same function: one scaling.
    images = scale_pixels(images)
    return images[..., tf.newaxis] if images.shape.rank == 3 else images, labels


# Decoding a JPEG with Pillow (~0.3-0.5 ms for a 100-px photo) is what a streamed folder's
# pipeline spends its time on, about three quarters of it in Pillow's Python code (header
# parsing) under the GIL. One tf.numpy_function call per chunk of files instead of per file
# measured 2,179 against 1,245 images/s on 2 cores (docs/benchmarks.md, "Folders streamed
# from disk"); 4 parallel calls instead of 2 gained nothing.
_DECODE_CALLS = max(2, os.cpu_count() or 1)
_DECODE_CHUNK = 32  # files per call when decoding unbatched pairs (evaluation, the cache)


def _decoded(files: ImageFiles, pairs: tf.data.Dataset, batched: bool = False
             ) -> tf.data.Dataset:
    """(path, label) pairs, or batches of them, decoded to images in parallel and in order."""
    def decode(paths: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.numpy_function(files.decode_many, [paths], tf.uint8, stateful=False)
        images.set_shape((None, *files.image_shape))
        return images, labels

    chunks = pairs if batched else pairs.batch(_DECODE_CHUNK)
    images = chunks.map(decode, num_parallel_calls=_DECODE_CALLS, deterministic=True)
    return images if batched else images.unbatch()


def _path_pairs(files: ImageFiles, labels: np.ndarray) -> tf.data.Dataset:
    paths = [os.fsencode(path) for path in files.paths]
    return tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), labels))


def array_dataset(images: np.ndarray | ImageFiles, labels: np.ndarray,
                  cache: Path | None = None) -> tf.data.Dataset:
    """Unbatched (image, label) pairs; built once and reused by every epoch.

    `images` may be `ImageFiles`: then decoded in parallel, in order, and with `cache` (a
    file prefix, see `cache_file`) decoded once and read back from there afterwards.
    """
    labels = labels.astype(np.int32)
    if not isinstance(images, ImageFiles):
        return tf.data.Dataset.from_tensor_slices((images, labels))
    pairs = _decoded(images, _path_pairs(images, labels))
    return pairs if cache is None else pairs.cache(str(cache))


@dataclass(frozen=True)
class TrainExamples:
    """A run's training examples: (image, label) pairs, or (path, label) ones and the
    `files` to decode them from after shuffling."""

    pairs: tf.data.Dataset
    files: ImageFiles | None = None


def train_examples(images: np.ndarray | ImageFiles, labels: np.ndarray,
                   cache: Path | None = None) -> TrainExamples:
    """The training set as `train_batches` takes it (decoded per epoch unless `cache`)."""
    if isinstance(images, ImageFiles) and cache is None:
        return TrainExamples(_path_pairs(images, labels.astype(np.int32)), images)
    return TrainExamples(array_dataset(images, labels, cache))


def train_batches(examples: TrainExamples, batch_size: int, shuffle_buffer: int, seed: int,
                  epoch: int, skip_batches: int = 0) -> tf.data.Dataset:
    """One epoch of shuffled training batches; `skip_batches` resumes mid-epoch."""
    pairs = examples.pairs.shuffle(shuffle_buffer, seed=epoch_seed(seed, epoch),
                                   reshuffle_each_iteration=False)
    if skip_batches:  # the same batches as batching first; skipped files are not decoded
        pairs = pairs.skip(skip_batches * batch_size)
    batches = pairs.batch(batch_size)
    if examples.files is not None:
        batches = _decoded(examples.files, batches, batched=True)
    return _without_autotune(batches)


def eval_batches(pairs: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Test batches in file order."""
    return _without_autotune(pairs.batch(batch_size))


def cache_file(folder: Path, part: str, files: ImageFiles) -> Path:
    """Where `files` of a run's `part` ("train", "test", "val") are cached on disk.

    The name holds a digest of the files' paths, sizes, times and the image shape, so a
    changed folder or size gets a new cache; a cache left unfinished (its `.index` file
    missing: the run was stopped during its first pass) is removed, or tf.data would refuse
    to write it again ("concurrent caching iterator"). A file gone since its header check
    counts as missing here; decoding it then feeds black and records it, as streaming does.
    """
    import hashlib

    digest = hashlib.sha256(repr(files.image_shape).encode())
    for path in files.paths:
        digest.update(_file_stamp(path))
    prefix = folder / f"{part}-{digest.hexdigest()[:16]}"
    if not Path(f"{prefix}.index").exists():
        for stale in folder.glob(f"{prefix.name}*"):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return prefix


def _file_stamp(path: str | bytes) -> bytes:
    """A file's path, size and time for the cache digest (the path's bytes as the system
    spells them, so a name that is not UTF-8 has one too); a missing file is marked so."""
    try:
        info = os.stat(path)
    except OSError:
        return os.fsencode(path) + b"\0missing\n"
    return os.fsencode(path) + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode()


def failures_of(*images: Any) -> list[tuple[str, str]]:
    """Files of these `ImageFiles` that failed to decode so far (each list once)."""
    lists = {id(x.failures): x.failures for x in images if isinstance(x, ImageFiles)}
    return [failure for failures in lists.values() for failure in failures]
