"""MNIST-style copies: a folder of the four IDX files, or a Keras-style .npz; fully verified.

Every array is checked against the registry: the SHA-256 of its IDX content, dtype and
shape, equal counts of images and labels, labels in range. `tfcnn.data.locate` decides
which copy is used.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.data.download import one_line
from tfcnn.data.idx import read_idx_with_sha256, sha256_of_idx
from tfcnn.data.registry import (
    NPZ_KEYS,
    DatasetFile,
    DatasetInfo,
    check_array,
    check_splits,
    identify_digest,
)


def _candidates(folder: Path, f: DatasetFile) -> tuple[Path, ...]:
    # A gunzipped copy (the name without .gz) is accepted too; content decides, not names.
    names = (f.filename, f.filename[:-3]) if f.filename.endswith(".gz") else (f.filename,)
    return tuple(folder / n for n in names)


def find_file(folder: Path, f: DatasetFile) -> Path | None:
    """`f` in `folder`, gzipped or not; None when absent."""
    for path in _candidates(folder, f):
        with contextlib.suppress(OSError):
            if path.is_file():
                return path
    return None


def _check_digest(actual: str, f: DatasetFile, source: str) -> None:
    if actual == f.sha256:
        return
    other = identify_digest(actual)
    what = f"it is {other[0]}'s {other[1]}" if other else "corrupt or not the official file"
    raise DatasetError(f"{source}: SHA-256 of the IDX content is {actual}, expected {f.sha256} "
                       f"({what})")


def load_idx_folder(folder: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and verify the four IDX files in `folder`; arrays by role."""
    arrays, sources = {}, {}
    for f in info.files:
        path = find_file(folder, f)
        if path is None:
            wanted = _candidates(folder, f)
            alt = f" (or {wanted[1].name})" if len(wanted) > 1 else ""
            raise DatasetError(f"{wanted[0]}: missing{alt}; {folder} holds some of "
                               f"{info.name}'s files, and all four are needed")
        arr, digest = read_idx_with_sha256(path)
        check_array(info, f.role, arr, str(path))
        _check_digest(digest, f, str(path))
        arrays[f.role], sources[f.role] = arr, str(path)
    check_splits(info, arrays, sources)
    return arrays


def load_npz(path: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and verify a Keras-style .npz (x_train, y_train, x_test, y_test); arrays by role."""
    arrays, sources = {}, {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for f in info.files:
                key = NPZ_KEYS[f.role]
                if key not in npz.files:
                    raise DatasetError(f"{path}: has no array {key!r} (holds "
                                       f"{', '.join(npz.files) or 'nothing'}; expected "
                                       f"{', '.join(NPZ_KEYS.values())})")
                arrays[f.role], sources[f.role] = npz[key], f"{path}[{key}]"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read as .npz ({one_line(e)})") from e
    for f in info.files:
        check_array(info, f.role, arrays[f.role], sources[f.role])
        _check_digest(sha256_of_idx(arrays[f.role]), f, sources[f.role])
    check_splits(info, arrays, sources)
    return arrays
