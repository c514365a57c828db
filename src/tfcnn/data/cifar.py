"""CIFAR-10's binary version: finding a copy, verifying it, reading it, downloading it.

A copy is the official archive (`cifar-10-binary.tar.gz`, its SHA-256 checked before it
is opened) or its extracted folder `cifar-10-batches-bin` (each batch file's SHA-256
checked). A batch file is records of 1 label byte and 3,072 pixel bytes (1,024 red, then
green, then blue, each row by row), read into uint8 images of shape (N, 32, 32, 3).
Nothing is read past the sizes the registry gives, so a bomb or an endless stream costs
no more than the real files. `tfcnn.data.locate` decides which copy is used.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.data.download import (
    Limits,
    MirrorFailure,
    cache_folder,
    fetch,
    one_line,
    temp_beside,
    try_mirrors,
)
from tfcnn.data.registry import DatasetFile, DatasetInfo, check_array, check_splits

_CHUNK = 1 << 20


def record_bytes(info: DatasetInfo) -> int:
    """Bytes per record: one label byte and the image's pixels."""
    return 1 + int(np.prod(info.image_shape))


def _archive(info: DatasetInfo) -> DatasetFile:
    if info.archive is None:
        raise DatasetError(f"dataset {info.name!r}: the registry names no archive")
    return info.archive


def find_copy(folder: Path, info: DatasetInfo) -> Path | None:
    """The archive in `folder`, or the folder of batch files (`folder` or its `archive_dir`)."""
    archive = folder / _archive(info).filename
    if archive.is_file():
        return archive
    for candidate in (folder, folder / info.archive_dir):
        if any((candidate / f.filename).is_file() for f in info.files):
            return candidate
    return None


def _read_exactly(stream: BinaryIO, size: int, source: str) -> tuple[np.ndarray, str]:
    """`size` bytes of `stream` (and their SHA-256); DatasetError if it ends sooner."""
    buf = np.empty(size, dtype=np.uint8)
    view, done = memoryview(buf), 0
    while done < size:
        got = stream.readinto(view[done:done + _CHUNK])
        if not got:
            raise DatasetError(f"{source}: ends after {done} bytes; expected {size}")
        done += got
    return buf, hashlib.sha256(buf).hexdigest()


def _check_size(f: DatasetFile, size: int, source: str, info: DatasetInfo) -> None:
    if size != f.size:
        raise DatasetError(f"{source}: is {size} bytes; expected {f.size} bytes (records of 1 "
                           f"label byte and {record_bytes(info) - 1} pixel bytes)")


def _check_digest(actual: str, f: DatasetFile, source: str) -> None:
    if actual != f.sha256:
        raise DatasetError(f"{source}: SHA-256 is {actual}, expected {f.sha256} (corrupt or "
                           "not the official file)")


class _Splits:
    """The train and test arrays, allocated once; each batch is written into its slice.

    Measured on a full-size copy: 250 MiB peak instead of 400 MiB when batches were
    decoded separately and then concatenated (the arrays themselves are 184 MB).
    """

    def __init__(self, info: DatasetInfo) -> None:
        self.info, self.rec = info, record_bytes(info)
        self.where: dict[str, tuple[str, int]] = {}  # batch file -> (split, first index)
        counts = {"train": 0, "test": 0}
        for f in info.files:
            if f.size is None:
                raise DatasetError(f"dataset {info.name!r}: the registry gives no size for "
                                   f"{f.filename}")
            self.where[f.filename] = (f.role, counts[f.role])
            counts[f.role] += f.size // self.rec
        self.images = {s: np.empty((n, *info.image_shape), np.uint8) for s, n in counts.items()}
        self.labels = {s: np.empty(n, np.uint8) for s, n in counts.items()}
        self.done: set[str] = set()

    def add(self, filename: str, buf: np.ndarray) -> None:
        """Decode one batch file's records (sizes already checked) into its slice."""
        rows = buf.reshape(-1, self.rec)
        split, first = self.where[filename]
        height, width, channels = self.info.image_shape
        # Stored channel by channel (CHW); the models take (H, W, C).
        chw = rows[:, 1:].reshape(-1, channels, height, width)
        self.images[split][first:first + len(rows)] = chw.transpose(0, 2, 3, 1)
        self.labels[split][first:first + len(rows)] = rows[:, 0]
        self.done.add(filename)

    def arrays(self, where: str) -> dict[str, np.ndarray]:
        """The verified arrays by role; `where` names the copy in messages."""
        arrays, sources = {}, {}
        for split in ("train", "test"):
            names = ", ".join(f.filename for f in self.info.files if f.role == split)
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = (self.images[split],
                                                                   self.labels[split])
            sources[f"{split}_images"] = sources[f"{split}_labels"] = f"{where} ({names})"
        for role, arr in arrays.items():
            check_array(self.info, role, arr, sources[role])
        check_splits(self.info, arrays, sources)
        return arrays


def load_batch_folder(folder: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and verify the extracted batch files in `folder`; arrays by role."""
    splits = _Splits(info)
    for f in info.files:
        path = folder / f.filename
        if not path.is_file():
            raise DatasetError(f"{path}: missing; {folder} holds some of {info.name}'s batch "
                               f"files, and all {len(info.files)} are needed")
        try:
            with open(path, "rb") as stream:
                size = path.stat().st_size
                _check_size(f, size, str(path), info)
                buf, digest = _read_exactly(stream, size, str(path))
        except OSError as e:
            raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from e
        _check_digest(digest, f, str(path))
        splits.add(f.filename, buf)
        del buf  # before the next batch is read
    return splits.arrays(str(folder))


def sha256_of_file(path: Path) -> str:
    """SHA-256 hex of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_archive(path: Path, info: DatasetInfo, source: str) -> None:
    archive = _archive(info)
    try:
        size = path.stat().st_size
        if archive.size is not None and size != archive.size:
            raise DatasetError(f"{source}: is {size} bytes; expected {archive.size} (the "
                               f"official {archive.filename})")
        digest = sha256_of_file(path)
    except OSError as e:
        raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from e
    _check_digest(digest, archive, source)


def _read_members(tar: tarfile.TarFile, info: DatasetInfo, source: str) -> _Splits:
    wanted = {f.filename: f for f in info.files}
    splits = _Splits(info)
    for member in tar:
        name = member.name.rsplit("/", 1)[-1]
        f = wanted.get(name)
        if f is None or name in splits.done:
            continue
        where = f"{source}[{member.name}]"
        if not member.isfile():
            raise DatasetError(f"{where}: not a regular file")
        _check_size(f, member.size, where, info)
        stream = tar.extractfile(member)
        buf, digest = _read_exactly(stream, member.size, where)
        _check_digest(digest, f, where)
        splits.add(name, buf)
        del buf  # before the next batch is read
    missing = [n for n in wanted if n not in splits.done]
    if missing:
        raise DatasetError(f"{source}: has no {', '.join(missing)} (expected "
                           f"{info.archive_dir}/ with {', '.join(wanted)})")
    return splits


def load_archive(path: Path, info: DatasetInfo, source: str | None = None) -> dict[str, np.ndarray]:
    """Verify the archive's SHA-256, then read its batch files; arrays by role."""
    source = str(path) if source is None else source
    _verify_archive(path, info, source)
    return _read_archive(path, info, source)


def _read_archive(path: Path, info: DatasetInfo, source: str) -> dict[str, np.ndarray]:
    try:
        # "r|gz": one pass, streamed; only the batch files are kept.
        with tarfile.open(path, mode="r|gz") as tar:
            splits = _read_members(tar, info, source)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{source}: cannot read as .tar.gz ({one_line(e)})") from e
    return splits.arrays(source)


def load_copy(path: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read what `find_copy` found: the archive or a folder of batch files."""
    return load_archive(path, info) if path.is_file() else load_batch_folder(path, info)


def download_cifar(info: DatasetInfo, cache: Path, mirrors: Sequence[str], limits: Limits,
                   progress: bool) -> dict[str, np.ndarray]:
    """Download the archive into `cache` (kept only once verified and read); arrays by role."""
    if not mirrors:
        raise DatasetError("no mirrors configured")
    archive = _archive(info)
    with cache_folder(cache), temp_beside(cache / archive.filename) as tmp:
        def attempt(url: str) -> dict[str, np.ndarray]:
            fetch(url, tmp, max_bytes=archive.size, limits=limits, progress=progress,
                  desc=archive.filename)
            digest = sha256_of_file(tmp)
            if digest != archive.sha256:
                raise MirrorFailure(f"SHA-256 is {digest}, expected {archive.sha256}")
            return _read_archive(tmp, info, url)

        return try_mirrors(archive.filename, mirrors, attempt)
