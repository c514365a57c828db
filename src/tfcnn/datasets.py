"""The registered datasets as numpy arrays: `tfcnn.datasets.load(name)`, Keras-style.

Public API. The arrays come from the same place the command line's `--dataset NAME
--data-dir DIR` would use, verified the same way (SHA-256 of every file): the folder
given, else `$TFCNN_DATA_DIR`, Keras's cache, system copies, tfcnn's cache, and then a
download. Imports no TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np

from tfcnn.data.locate import load_dataset
from tfcnn.data.registry import dataset_names

__all__ = ["available", "load"]

Split = tuple[np.ndarray, np.ndarray]


def available() -> list[str]:
    """Names `load` accepts (aliases such as "fashion-mnist" and "cifar-10" work too)."""
    return dataset_names()


def load(name: str, data_dir: str | os.PathLike[str] | None = None, *,
         download: bool = True) -> tuple[Split, Split, tuple[str, ...]]:
    """Load a registered dataset: `((x_train, y_train), (x_test, y_test), class_names)`.

    Images are uint8, (N, 28, 28) for "mnist" and "fashion_mnist", (N, 32, 32, 3) for
    "cifar10"; labels are int64 class indices (N,), indexing `class_names`.

    `data_dir` is the only folder looked in when given (the dataset's files directly in
    it, or in a sub-folder named after the dataset); without it the search order above
    applies, ending in a download unless `download` is False.

    Raises `tfcnn.DatasetError` (a `tfcnn.TfcnnError`) with a one-line message naming
    the file or folder when the dataset is unknown, missing, corrupt or cannot be fetched.

    Example:
        >>> (x_train, y_train), (x_test, y_test), names = tfcnn.datasets.load("mnist",
        ...                                                                    data_dir)
        >>> x_train.shape, x_train.dtype
        ((60000, 28, 28), dtype('uint8'))
        >>> names[y_train[0]]
        '5'
    """
    data = load_dataset(name, data_dir, download=download)
    return ((data.x_train, data.y_train.astype(np.int64)),
            (data.x_test, data.y_test.astype(np.int64)), data.class_names)
