"""CIFAR-10 from Keras's cache: the Python version that `keras.datasets.cifar10` downloads.

Keras 3 keeps the archive as `~/.keras/datasets/cifar-10-batches-py-target_archive` and
extracts it to `cifar-10-batches-py-target/cifar-10-batches-py/`; Keras 2 used
`cifar-10-batches-py.tar.gz` and `cifar-10-batches-py/`. Each batch is a pickled dict
(b"data": uint8 rows of 3,072 CHW pixels, b"labels": a list of ints). The archive's
SHA-256 is checked before it is opened, and every batch's MD5 (the digests published for
these files) before it is unpickled, by an unpickler that can build nothing but numpy
arrays and plain containers.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.data.cifar import sha256_of_file
from tfcnn.data.download import one_line
from tfcnn.data.registry import DatasetInfo, check_array, check_splits

# Archive: keras/src/datasets/cifar10.py (file_hash); its size: the TensorFlow CIFAR-10
# tutorial's download log. Batch MD5s: torchvision/datasets/cifar.py (train_list, test_list).
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_SIZE = 170498071
BATCH_MD5 = MappingProxyType({
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
})
# Where Keras puts them, inside its datasets folder, newest layout first.
FOLDERS = ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py")
ARCHIVES = ("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz")
_MAX_BATCH_BYTES = 40 << 20  # each official pickle is ~31 MB
# The only globals a batch pickle may name (numpy 1 and numpy 2 spellings).
_ALLOWED = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


def find_keras_copy(keras_dir: Path) -> Path | None:
    """The first of Keras's extracted folders or archives present in `keras_dir`."""
    for name in FOLDERS:
        if (keras_dir / name / "data_batch_1").is_file():
            return keras_dir / name
    for name in ARCHIVES:
        if (keras_dir / name).is_file():
            return keras_dir / name
    return None


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; numpy 1 has no _core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _decode_batch(data: bytes, source: str, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnly(io.BytesIO(data), encoding="bytes").load()
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise DatasetError(f"{source}: not a CIFAR-10 Python batch ({one_line(e)})") from e
    height, width, channels = info.image_shape
    if rows.ndim != 2 or rows.shape[1] != height * width * channels or len(labels) != len(rows):
        raise DatasetError(f"{source}: holds data {rows.shape} and {len(labels)} labels; "
                           f"expected (N, {height * width * channels}) and N labels")
    if labels.size and not 0 <= labels.min() <= labels.max() < 256:
        raise DatasetError(f"{source}: labels outside 0..255")
    images = rows.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _checked(data: bytes, name: str, source: str, md5: dict[str, str]) -> bytes:
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if actual != md5[name]:
        raise DatasetError(f"{source}: MD5 is {actual}, expected {md5[name]} (corrupt or not "
                           "the official file)")
    return data


def _arrays(batches: dict[str, tuple[np.ndarray, np.ndarray]], where: str,
            info: DatasetInfo) -> dict[str, np.ndarray]:
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    arrays = {"train_images": np.concatenate([b[0] for b in train]),
              "train_labels": np.concatenate([b[1] for b in train]),
              "test_images": batches["test_batch"][0], "test_labels": batches["test_batch"][1]}
    sources = {role: where for role in arrays}
    for role, arr in arrays.items():
        check_array(info, role, arr, where)
    check_splits(info, arrays, sources)
    return arrays


def _read_limited(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(_MAX_BATCH_BYTES + 1)
    if len(data) > _MAX_BATCH_BYTES:
        raise DatasetError(f"{path}: larger than {_MAX_BATCH_BYTES} bytes; not a CIFAR-10 batch")
    return data


def load_keras_copy(path: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and verify what `find_keras_copy` found (a folder or an archive); arrays by role."""
    md5, archive_sha256, archive_size = dict(BATCH_MD5), ARCHIVE_SHA256, ARCHIVE_SIZE
    batches = {}
    if path.is_dir():
        for name in md5:
            source = str(path / name)
            try:
                data = _read_limited(path / name)
            except OSError as e:
                raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from e
            batches[name] = _decode_batch(_checked(data, name, source, md5), source, info)
        return _arrays(batches, str(path), info)
    try:
        size = path.stat().st_size
        if size != archive_size:
            raise DatasetError(f"{path}: is {size} bytes; expected {archive_size} (Keras's "
                               "cifar-10-python.tar.gz)")
        digest = sha256_of_file(path)
        if digest != archive_sha256:
            raise DatasetError(f"{path}: SHA-256 is {digest}, expected {archive_sha256} "
                               "(corrupt or not the official file)")
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if name in md5 and member.isfile() and member.size <= _MAX_BATCH_BYTES:
                    source = f"{path}[{member.name}]"
                    data = tar.extractfile(member).read()
                    batches[name] = _decode_batch(_checked(data, name, source, md5), source,
                                                  info)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read as .tar.gz ({one_line(e)})") from e
    missing = [n for n in md5 if n not in batches]
    if missing:
        raise DatasetError(f"{path}: has no {', '.join(missing)}")
    return _arrays(batches, str(path), info)
