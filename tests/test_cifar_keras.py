"""CIFAR-10 from Keras's cache, the Python version (tfcnn.data.cifar_keras through locate).

Fixtures: small pickled batches laid out as Keras 3 and Keras 2 leave them, their digests
patched in for the official ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from test_cifar import REAL
from tfcnn.core.errors import DatasetError
from tfcnn.data import cifar_keras
from tfcnn.data.locate import describe_source, load_dataset

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def python_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch as the official files hold it: CHW rows, a list of labels; numpy 1's names."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    data = pickle.dumps({b"batch_label": b"fixture", b"labels": [int(v) for v in labels],
                         b"data": rows, b"filenames": [b"x.png"] * len(images)}, protocol=3)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


@pytest.fixture
def keras_fixture(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = {n: rng.integers(0, 256, (2 + i, 32, 32, 3), dtype=np.uint8)
              for i, n in enumerate(NAMES)}
    labels = {n: rng.integers(0, 10, 2 + i, dtype=np.uint8) for i, n in enumerate(NAMES)}
    files = {n: python_batch(images[n], labels[n]) for n in NAMES}
    monkeypatch.setattr(cifar_keras, "BATCH_MD5", {n: hashlib.md5(d).hexdigest()
                                                   for n, d in files.items()})
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    keras_dir = tmp_path / "home" / ".keras" / "datasets"
    keras_dir.mkdir(parents=True)
    return images, labels, files, env, keras_dir


def _check(ds, images, labels) -> None:
    assert ds.x_train.shape == (2 + 3 + 4 + 5 + 6, 32, 32, 3) and ds.x_test.shape == (7, 32, 32, 3)
    np.testing.assert_array_equal(ds.x_train, np.concatenate([images[n] for n in NAMES[:5]]))
    np.testing.assert_array_equal(ds.y_test, labels["test_batch"])
    assert ds.class_names == REAL.class_names


@pytest.mark.parametrize("layout", cifar_keras.FOLDERS)
def test_keras_extracted_folder(keras_fixture, layout):
    images, labels, files, env, keras_dir = keras_fixture
    folder = keras_dir / layout
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert describe_source("cifar10", env=env) == str(folder)
    ds = load_dataset("cifar10", env=env, mirrors=[])
    assert ds.source == str(folder)
    _check(ds, images, labels)


@pytest.mark.parametrize("name", cifar_keras.ARCHIVES)
def test_keras_archive_is_checked_then_read(keras_fixture, monkeypatch, name):
    images, labels, files, env, keras_dir = keras_fixture
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member_name, data in files.items():
            member = tarfile.TarInfo(f"cifar-10-batches-py/{member_name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    archive = keras_dir / name
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match=rf"^{archive}: is {archive.stat().st_size} bytes; "
                       r"expected 170498071 \(Keras's cifar-10-python\.tar\.gz\)$"):
        load_dataset("cifar10", env=env, mirrors=[])
    monkeypatch.setattr(cifar_keras, "ARCHIVE_SIZE", archive.stat().st_size)
    with pytest.raises(DatasetError, match=r"SHA-256 is [0-9a-f]{64}, expected 6d958be0"):
        load_dataset("cifar10", env=env, mirrors=[])
    monkeypatch.setattr(cifar_keras, "ARCHIVE_SHA256", hashlib.sha256(buf.getvalue()).hexdigest())
    ds = load_dataset("cifar10", env=env, mirrors=[])
    assert ds.source == str(archive)
    _check(ds, images, labels)


def test_a_changed_batch_fails_its_md5(keras_fixture):
    _, _, files, env, keras_dir = keras_fixture
    folder = keras_dir / cifar_keras.FOLDERS[0]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    changed = bytearray(files["data_batch_4"])
    changed[-100] ^= 1  # one pixel
    (folder / "data_batch_4").write_bytes(bytes(changed))
    with pytest.raises(DatasetError, match=rf"^{folder / 'data_batch_4'}: MD5 is [0-9a-f]{{32}}, "
                       r"expected [0-9a-f]{32} \(corrupt or not the official file\)$"):
        load_dataset("cifar10", env=env, mirrors=[])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_the_unpickler_builds_nothing_but_arrays(keras_fixture, monkeypatch):
    _, _, files, env, keras_dir = keras_fixture
    folder = keras_dir / cifar_keras.FOLDERS[1]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    evil = pickle.dumps({b"data": _Evil()}, protocol=3)
    (folder / "test_batch").write_bytes(evil)
    monkeypatch.setitem(cifar_keras.BATCH_MD5, "test_batch", hashlib.md5(evil).hexdigest())
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR-10 Python batch \(refusing "
                       r"to build (posix|os|nt)\.system\)$"):
        load_dataset("cifar10", env=env, mirrors=[])


def test_a_binary_copy_in_keras_cache_comes_first(keras_fixture):
    _, _, _, env, keras_dir = keras_fixture
    (keras_dir / "cifar-10-batches-bin").mkdir()
    (keras_dir / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(b"x")
    folder = keras_dir / cifar_keras.FOLDERS[0]
    folder.mkdir(parents=True)
    assert describe_source("cifar10", env=env) == str(keras_dir / "cifar-10-batches-bin")
