"""IDX files (the MNIST format): decoding with full validation, encoding, and their SHA-256.

An IDX file is: two zero bytes, a type code, the number of dimensions, one big-endian
uint32 per dimension, then the items, big-endian, row-major. Files may be gzipped;
gzip is recognised by its magic bytes, so a gunzipped file under a `.gz` name (or the
reverse) still reads. Reading streams the decompression and stops at the size the header
declares, so a small gzip bomb cannot cost more memory than the file it claims to be.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from types import MappingProxyType
from typing import BinaryIO

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.core.fsutil import atomic_write_bytes

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_CHUNK = 1 << 20
# Trailing bytes are counted up to this many, then reported as "at least": a bomb's excess
# is never decompressed in full.
_TRAILING_PROBE = 1 << 20

# Type code -> big-endian item dtype, as the IDX format defines them.
IDX_TYPES = MappingProxyType({
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
})
_CODE_OF_KIND = MappingProxyType({(dt.kind, dt.itemsize): code for code, dt in IDX_TYPES.items()})
_KNOWN_TYPES = ", ".join(f"0x{code:02X} {dt.newbyteorder('=').name}"
                         for code, dt in IDX_TYPES.items())


def _shape_text(shape: tuple[int, ...], dtype: np.dtype) -> str:
    return "x".join(str(d) for d in shape) + " " + dtype.newbyteorder("=").name


def _gzip_error(source: str, e: BaseException) -> DatasetError:
    # EOFError is what a download cut mid-stream looks like.
    reason = " ".join(str(e).split()) or type(e).__name__
    return DatasetError(f"{source}: corrupt or truncated gzip data ({reason})")


class _Content:
    """The decompressed content of an IDX file, read in bounded pieces."""

    def __init__(self, stream: BinaryIO, source: str, size: int | None) -> None:
        self.gz = stream.read(2) == GZIP_MAGIC
        stream.seek(0)
        self.stream: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if self.gz else stream
        self.source = source
        self.size = size  # bytes of a raw file (None for gzip: unknown until read)
        self.what = "decompressed content" if self.gz else "file"

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at the end of the content)."""
        parts, left = [], n
        while left > 0:
            chunk = self._call(self.stream.read, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def read_into(self, buf: memoryview) -> int:
        """Fill `buf` from the stream; the number of bytes read (short only at the end)."""
        done = 0
        while done < len(buf):
            got = self._call(self.stream.readinto, buf[done:done + _CHUNK])
            if not got:
                break
            done += got
        return done

    def _call(self, fn, arg):  # noqa: ANN001, ANN202 (read or readinto)
        try:
            return fn(arg)
        except _GZIP_ERRORS as e:
            if self.gz:
                raise _gzip_error(self.source, e) from e
            raise DatasetError(f"{self.source}: cannot read ({e})") from e

    def too_short(self, have: int, needed: str) -> DatasetError:
        return DatasetError(f"{self.source}: {self.what} is {have} bytes, too short for an "
                            f"IDX header{needed}")


def _read_header(content: _Content) -> tuple[bytes, tuple[int, ...], np.dtype]:
    head = content.read(4)
    source = content.source
    if len(head) < 4:
        raise content.too_short(len(head), " (at least 4 bytes)")
    if head[0] != 0 or head[1] != 0:
        raise DatasetError(f"{source}: not an IDX file (starts with {head.hex(' ')}; "
                           "expected 00 00, a type code and the number of dimensions)")
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        raise DatasetError(f"{source}: unknown IDX type code 0x{code:02X} "
                           f"(expected one of {_KNOWN_TYPES})")
    if ndim < 1:
        raise DatasetError(f"{source}: IDX header declares 0 dimensions (expected at least 1)")
    dims = content.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise content.too_short(4 + len(dims), f" with {ndim} dimensions ({4 + 4 * ndim} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return head + dims, shape, IDX_TYPES[code]


def _mismatch(content: _Content, have: str, shape: tuple[int, ...], dtype: np.dtype,
              expected: int, problem: str) -> DatasetError:
    return DatasetError(f"{content.source}: {content.what} is {have} bytes, but its header "
                        f"({_shape_text(shape, dtype)}) needs {expected} ({problem})")


def _read_content(content: _Content, max_bytes: int | None) -> tuple[np.ndarray, str]:
    """Decode the IDX content of `content`; never reads past what its header declares.

    A gzip bomb costs at most the declared size (and `max_bytes` bounds that) plus
    _TRAILING_PROBE: its excess is refused without being decompressed.
    """
    header, shape, dtype = _read_header(content)
    nbytes = math.prod(shape) * dtype.itemsize
    expected = len(header) + nbytes
    if max_bytes is not None and expected > max_bytes:
        raise DatasetError(f"{content.source}: its header ({_shape_text(shape, dtype)}) "
                           f"declares {expected} bytes; this file has at most {max_bytes} "
                           "(not read further)")
    if content.size is not None and content.size < expected:  # a raw file: known length
        raise _mismatch(content, str(content.size), shape, dtype, expected, "truncated")
    try:
        items = np.empty(nbytes, dtype=np.uint8)
    except (MemoryError, ValueError) as e:
        raise DatasetError(f"{content.source}: its header ({_shape_text(shape, dtype)}) "
                           f"declares {expected} bytes, more than this machine can hold") from e
    got = content.read_into(memoryview(items))
    if got < nbytes:
        raise _mismatch(content, str(len(header) + got), shape, dtype, expected, "truncated")
    extra = len(content.read(_TRAILING_PROBE))
    if extra:
        at_least = "at least " if extra == _TRAILING_PROBE else ""
        raise _mismatch(content, f"{at_least}{expected + extra}", shape, dtype, expected,
                        f"{at_least}{extra} trailing bytes")
    digest = hashlib.sha256(header)
    digest.update(items)
    # astype copies only when the byte order must change (uint8 stays as read).
    array = items.view(dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)
    return array, digest.hexdigest()


def decode_idx(data: bytes, source: str, max_bytes: int | None = None) -> np.ndarray:
    """Decode IDX file content (gzipped or raw) into an array in native byte order.

    `source` names the file in error messages. Every inconsistency between the header
    and the content length raises DatasetError; content larger than `max_bytes` (after
    decompression) is refused from its header alone.
    """
    stream = io.BytesIO(data)
    return _read_content(_Content(stream, source, None), max_bytes)[0]


def read_idx_with_sha256(path: str | os.PathLike[str], max_bytes: int | None = None,
                         source: str | None = None) -> tuple[np.ndarray, str]:
    """Read an IDX file and return (array, SHA-256 hex of its decompressed content).

    Decompresses once, as a stream, stopping where the header says the content ends
    (a gzip bomb is refused after at most `max_bytes` + 1 MiB); this is what dataset
    verification uses. Messages name `source` (default: the path).
    """
    source = os.fspath(path) if source is None else source
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            content = _Content(f, source, size)
            if content.gz:
                content.size = None
            return _read_content(content, max_bytes)
    except OSError as e:
        raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from e


def read_idx(path: str | os.PathLike[str], max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-byte-order array."""
    return read_idx_with_sha256(path, max_bytes)[0]


def _header_and_items(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    arr = np.asarray(array)
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DatasetError(f"array: dtype {arr.dtype} cannot be stored in IDX "
                           f"(expected one of {_KNOWN_TYPES})")
    if arr.ndim < 1 or arr.ndim > 255:
        raise DatasetError(f"array: has {arr.ndim} dimensions; IDX needs 1 to 255")
    if any(d >= 2**32 for d in arr.shape):
        raise DatasetError(f"array: shape {arr.shape} has a dimension too large for IDX (< 2**32)")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    items = np.ascontiguousarray(arr, dtype=IDX_TYPES[code])
    return header, items


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as raw (uncompressed) IDX file content."""
    header, items = _header_and_items(array)
    return header + items.tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzipped when `path` ends in `.gz`, atomically."""
    data = encode_idx(array)
    if os.fspath(path).endswith(".gz"):
        # mtime=0 keeps the output byte-for-byte reproducible.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)


def sha256_of_idx(array: np.ndarray) -> str:
    """SHA-256 hex of `encode_idx(array)`: the digest of the decompressed IDX file.

    Lets an array from another container (Keras's mnist.npz) be checked against the
    digest published for the IDX file, without building the encoded bytes.
    """
    header, items = _header_and_items(array)
    digest = hashlib.sha256(header)
    digest.update(items.reshape(-1).view(np.uint8))
    return digest.hexdigest()
