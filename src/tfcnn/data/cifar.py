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
    rec = record_bytes(info)
    if (f.size is not None and size != f.size) or size % rec:
        want = f"{f.size} bytes" if f.size is not None else f"a multiple of {rec} bytes"
        raise DatasetError(f"{source}: is {size} bytes; expected {want} (records of 1 label "
                           f"byte and {rec - 1} pixel bytes)")


def _check_digest(actual: str, f: DatasetFile, source: str) -> None:
    if actual != f.sha256:
        raise DatasetError(f"{source}: SHA-256 is {actual}, expected {f.sha256} (corrupt or "
                           "not the official file)")


def _records(buf: np.ndarray, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    rows = buf.reshape(-1, record_bytes(info))
    height, width, channels = info.image_shape
    # Stored channel by channel (CHW); the models take (H, W, C).
    images = rows[:, 1:].reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), rows[:, 0].copy()


def _assemble(info: DatasetInfo, parts: dict[str, tuple[np.ndarray, np.ndarray, str]],
              where: str) -> dict[str, np.ndarray]:
    arrays, sources = {}, {}
    for split in ("train", "test"):
        names = [f.filename for f in info.files if f.role == split]
        chunks = [parts[n] for n in names]
        arrays[f"{split}_images"] = np.concatenate([c[0] for c in chunks])
        arrays[f"{split}_labels"] = np.concatenate([c[1] for c in chunks])
        label = f"{where} ({', '.join(names)})"
        sources[f"{split}_images"] = sources[f"{split}_labels"] = label
    for role, arr in arrays.items():
        check_array(info, role, arr, sources[role])
    check_splits(info, arrays, sources)
    return arrays


def load_batch_folder(folder: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and verify the extracted batch files in `folder`; arrays by role."""
    parts = {}
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
        parts[f.filename] = (*_records(buf, info), str(path))
    return _assemble(info, parts, str(folder))


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


def _read_members(tar: tarfile.TarFile, info: DatasetInfo, source: str) -> dict[str, tuple]:
    wanted = {f.filename: f for f in info.files}
    parts = {}
    for member in tar:
        name = member.name.rsplit("/", 1)[-1]
        f = wanted.get(name)
        if f is None or name in parts:
            continue
        where = f"{source}[{member.name}]"
        if not member.isfile():
            raise DatasetError(f"{where}: not a regular file")
        _check_size(f, member.size, where, info)
        stream = tar.extractfile(member)
        buf, digest = _read_exactly(stream, member.size, where)
        _check_digest(digest, f, where)
        parts[name] = (*_records(buf, info), where)
    missing = [n for n in wanted if n not in parts]
    if missing:
        raise DatasetError(f"{source}: has no {', '.join(missing)} (expected "
                           f"{info.archive_dir}/ with {', '.join(wanted)})")
    return parts


def load_archive(path: Path, info: DatasetInfo, source: str | None = None) -> dict[str, np.ndarray]:
    """Verify the archive's SHA-256, then read its batch files; arrays by role."""
    source = str(path) if source is None else source
    _verify_archive(path, info, source)
    return _read_archive(path, info, source)


def _read_archive(path: Path, info: DatasetInfo, source: str) -> dict[str, np.ndarray]:
    try:
        # "r|gz": one pass, streamed; only the batch files are kept.
        with tarfile.open(path, mode="r|gz") as tar:
            parts = _read_members(tar, info, source)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{source}: cannot read as .tar.gz ({one_line(e)})") from e
    return _assemble(info, parts, source)


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
