"""The public `tfcnn.datasets.load` (Keras-style arrays of the registered datasets)."""

from __future__ import annotations

import subprocess
import sys
from types import MappingProxyType

import numpy as np
import pytest

import tfcnn
from test_cifar import build
from tfcnn.core.errors import DatasetError, TfcnnError
from tfcnn.data import registry


def test_load_mnist_from_a_data_dir(shared_datasets_dir):
    (x_train, y_train), (x_test, y_test), names = tfcnn.datasets.load("mnist",
                                                                      shared_datasets_dir)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    assert names == tuple("0123456789")
    assert names[y_train[0]] == "5"  # the first MNIST digit
    assert np.bincount(y_test).tolist()[:2] == [980, 1135]


def test_load_cifar10_gives_colour_images(tmp_path, monkeypatch):
    c = build(tmp_path)
    monkeypatch.setattr(registry, "_REGISTRY",
                        MappingProxyType({**registry._REGISTRY, "cifar10": c.info}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-binary.tar.gz").write_bytes(c.archive)
    (x_train, y_train), (x_test, _), names = tfcnn.datasets.load("CIFAR-10", tmp_path / "data")
    assert x_train.shape == (25, 32, 32, 3) and x_test.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(x_train, c.x_train)
    assert names[:2] == ("airplane", "automobile") and y_train.dtype == np.int64


def test_errors_are_tfcnn_errors_naming_the_folder(tmp_path):
    with pytest.raises(TfcnnError, match=r"'imagenet' is unknown; expected one of: mnist, "
                       r"fashion_mnist, cifar10"):
        tfcnn.datasets.load("imagenet")
    with pytest.raises(DatasetError, match=rf"^--data-dir {tmp_path}: holds no copy of mnist"):
        tfcnn.datasets.load("mnist", tmp_path)
    assert tfcnn.datasets.available() == ["mnist", "fashion_mnist", "cifar10"]


def test_importing_it_loads_no_tensorflow():
    code = ("import sys, tfcnn.datasets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
