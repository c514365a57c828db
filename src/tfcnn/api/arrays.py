"""`tfcnn.train(data=...)`: images in memory as a run's dataset.

`data` is `(x, y)`, `((x, y), (x_test, y_test))`, a `tf.data.Dataset` of (image, label)
pairs (batched or not), or a pair of Datasets (training, test). Images: uint8 N×H×W (grey)
or N×H×W×C with C 1 or 3, or floats in [0, 1], which are stored as uint8 (round(255 x)), as
every dataset is fed. Labels: integers 0 .. classes - 1, one per image; `class_names` names
the classes (default "0", "1", ...). Without a test set of its own, `test_split` of each class
(default 0.1) is held out as the test set, as for an image folder; `val_split` holds out a
validation split of the training images, as for any dataset.

A Dataset is read once, into memory: training shuffles by position and resumes at a given
step of an epoch, and both need the whole set indexed and its length known. A set too large
for memory belongs in an image folder (`dataset="folder:PATH"`), which is streamed from disk.

config.json records the dataset as "arrays"; RUN/arrays.json keeps the class names and a
digest of the arrays, so that a resume, which needs the same arrays passed again
(`tfcnn.train(resume=RUN, data=...)`), is checked against them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, DatasetError, RunDirError
from tfcnn.core.fsutil import atomic_write_json
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.source import DEFAULT_TEST_SPLIT, with_validation_split
from tfcnn.data.split import stratified_split

ARRAYS = "arrays"  # config.json's dataset for a run trained on in-memory data
ARRAYS_JSON = "arrays.json"
# Settings that choose or shape a dataset on disk: not for data=.
NOT_WITH_DATA = ("dataset", "data_dir", "image_size", "grayscale", "cache")
_FORMS = ("expected (x, y) numpy arrays, ((x, y), (x_test, y_test)), or a tf.data.Dataset of "
          "(image, label)")


@dataclass(frozen=True)
class _Part:
    images: np.ndarray  # uint8, N×H×W or N×H×W×3
    labels: np.ndarray  # int64, N


def _is_dataset(value: Any) -> bool:
    tf = sys.modules.get("tensorflow")  # a Dataset means TensorFlow is loaded already
    return tf is not None and isinstance(value, tf.data.Dataset)


def _images(x: Any, where: str) -> np.ndarray:
    """`x` as uint8 N×H×W or N×H×W×3, or DatasetError naming what is wrong."""
    x = np.asarray(x)
    integer, floating = np.issubdtype(x.dtype, np.integer), np.issubdtype(x.dtype, np.floating)
    if x.dtype == np.bool_ or not (integer or floating) or (integer and x.dtype != np.uint8):
        raise DatasetError(f"{where}: images of dtype {x.dtype}; expected uint8 (0-255) or "
                           "floats in [0, 1]")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3) or 0 in x.shape[1:]:
        raise DatasetError(f"{where}: images of shape {x.shape}; expected N×H×W (grey) or "
                           "N×H×W×C with C 1 or 3")
    if not len(x):
        raise DatasetError(f"{where}: no images")
    if floating:
        if not np.isfinite(x).all():
            raise DatasetError(f"{where}: images hold NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise DatasetError(f"{where}: float images with values from {low:g} to {high:g}; "
                               "expected [0, 1] (divide by 255, or pass uint8)")
        x = np.rint(x * 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _labels(y: Any, count: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # Keras's CIFAR labels come as N×1
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{where}: labels of shape {y.shape}; expected one integer class "
                           "index per image, shape (N,) (for one-hot labels: y.argmax(1))")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where}: labels of dtype {y.dtype}; expected integers "
                           "0 .. classes - 1")
    if len(y) != count:
        raise DatasetError(f"{where}: {count:,} images but {len(y):,} labels")
    return y.astype(np.int64)


def _from_dataset(dataset: Any, where: str) -> _Part:
    """A Dataset of (image, label) pairs, batched or not, read into memory."""
    import tensorflow as tf

    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2
            and all(isinstance(s, tf.TensorSpec) for s in spec)):
        raise DatasetError(f"{where}: a Dataset of {spec}; expected (image, label) pairs")
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DatasetError(f"{where}: the Dataset repeats forever; pass it without .repeat()")
    batched = spec[1].shape.rank == 1
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise DatasetError(f"{where}: the Dataset is empty")
    try:
        x = np.concatenate(images) if batched else np.stack(images)
    except ValueError:
        raise DatasetError(f"{where}: the Dataset's images differ in size; resize them to one "
                           "size first (keras.layers.Resizing)") from None
    y = np.concatenate(labels) if batched else np.asarray(labels)
    x = _images(x, where)
    return _Part(x, _labels(y, len(x), where))


def _part(value: Any, where: str) -> _Part:
    if _is_dataset(value):
        return _from_dataset(value, where)
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise DatasetError(f"{where}: {_FORMS}, got {type(value).__name__}")
    x = _images(value[0], where)
    return _Part(x, _labels(value[1], len(x), where))


def _is_pair_of_parts(data: Any) -> bool:
    return (isinstance(data, tuple | list) and len(data) == 2
            and all(_is_dataset(d) or (isinstance(d, tuple | list) and len(d) == 2)
                    for d in data))


def _class_names(given: Sequence[str] | None, labels: np.ndarray,
                 dataset: Any = None) -> tuple[str, ...]:
    """The classes' names: those given (or a Keras Dataset's own), else "0" .. "n-1"."""
    if given is None:
        given = getattr(dataset, "class_names", None)
    if given is None:
        return tuple(str(i) for i in range(int(labels.max()) + 1))
    if isinstance(given, str) or not all(isinstance(n, str) and n for n in given):
        raise ConfigError("class_names: expected a list of non-empty strings, one per class")
    names = tuple(given)
    if len(set(names)) != len(names):
        raise ConfigError(f"class_names: {list(names)} names a class twice")
    return names


def _check_labels(part: _Part, classes: int | None, where: str) -> None:
    """No negative label; with `classes` (the names given), none beyond the last class."""
    bad = np.flatnonzero((part.labels < 0) | (part.labels >= (classes or np.inf)))
    if len(bad):
        i = int(bad[0])
        expected = ("labels from 0" if classes is None else
                    f"{classes} class names given: labels 0 .. {classes - 1}")
        raise DatasetError(f"{where}: label {part.labels[i]} of image {i} is out of range "
                           f"({expected})")


def _digest(parts: Sequence[_Part]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        for array in (part.images, part.labels):
            sha.update(repr(array.shape).encode())
            sha.update(array.tobytes())
    return sha.hexdigest()


@dataclass(frozen=True)
class InMemoryData:
    """`data=` checked: the training part (and a test part of its own, if given), the class
    names, and what RUN/arrays.json records of them."""

    parts: tuple[_Part, ...]
    class_names: tuple[str, ...]
    source: str
    record: dict[str, Any]

    def dataset(self, config: TrainConfig) -> LoadedDataset:
        """The run's dataset: the test part, or `config.test_split` of each class held out
        (default 0.1), and `config.val_split` for validation; `config.seed` seeds both."""
        assert config.seed is not None
        train = self.parts[0]
        if len(self.parts) == 2:
            test = self.parts[1]
        else:
            fraction = DEFAULT_TEST_SPLIT if config.test_split is None else config.test_split
            kept, held = stratified_split(train.labels, fraction, config.seed,
                                          len(self.class_names))
            train, test = (_Part(train.images[kept], train.labels[kept]),
                           _Part(train.images[held], train.labels[held]))
        dtype = np.uint8 if len(self.class_names) <= 256 else np.int32
        dataset = LoadedDataset(
            name=ARRAYS, x_train=train.images, y_train=train.labels.astype(dtype),
            x_test=test.images, y_test=test.labels.astype(dtype),
            class_names=self.class_names, source=self.source)
        return with_validation_split(dataset, config.val_split, config.seed)

    def save(self, run_path: Path) -> None:
        """Write RUN/arrays.json (when the run starts)."""
        atomic_write_json(Path(run_path) / ARRAYS_JSON, self.record)

    def check_resumes(self, run_path: Path) -> None:
        """RunDirError unless these are the arrays (and names) `run_path` was trained on."""
        path = Path(run_path) / ARRAYS_JSON
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{path}: cannot be read ({exc})") from None
        if not isinstance(saved, dict) or saved.get("sha256") != self.record["sha256"]:
            raise RunDirError(f"data: not the arrays {run_path} was trained on (their digest "
                              f"differs from {path}); pass those to resume it")
        if saved.get("class_names") != self.record["class_names"]:
            raise RunDirError(f"class_names: {self.record['class_names']} differ from "
                              f"{saved.get('class_names')} in {path}")


def saved_class_names(run_path: Path) -> list[str] | None:
    """The class names RUN/arrays.json records, or None."""
    try:
        names = json.loads((Path(run_path) / ARRAYS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names = names.get("class_names") if isinstance(names, dict) else None
    return names if isinstance(names, list) else None


def in_memory_data(data: Any, class_names: Sequence[str] | None,
                   config: TrainConfig) -> InMemoryData:
    """`data` checked (numpy only: no TensorFlow loads for it, unless it is a Dataset).

    DatasetError or ConfigError, one line, for data that is not as the module says.
    """
    own_test = _is_pair_of_parts(data)
    if own_test:
        train, test = _part(data[0], "data (training)"), _part(data[1], "data (test)")
        if test.images.shape[1:] != train.images.shape[1:]:
            raise DatasetError(f"data: test images of shape {test.images.shape[1:]}, training "
                               f"images {train.images.shape[1:]}; expected the same")
        if config.test_split is not None:
            raise ConfigError("test_split: not with a test set of its own in data=")
    else:
        train = _part(data, "data")
    parts = (train, test) if own_test else (train,)
    wheres = ("data (training)", "data (test)") if own_test else ("data",)
    for part, where in zip(parts, wheres, strict=True):
        _check_labels(part, None, where)
    first = data[0] if own_test else data
    names = _class_names(class_names, np.concatenate([p.labels for p in parts]),
                         first if _is_dataset(first) else None)
    for part, where in zip(parts, wheres, strict=True):
        _check_labels(part, len(names), where)
    if len(names) < 2:
        raise DatasetError("data: the labels hold one class only; a classifier needs at least 2 "
                           "(or give class_names)")
    record = {"class_names": list(names), "train_images": list(train.images.shape),
              "test_images": list(test.images.shape) if own_test else None,
              "sha256": _digest(parts)}
    source = "a tf.data.Dataset" if _is_dataset(first) else "in-memory arrays"
    return InMemoryData(parts, names, source, record)
