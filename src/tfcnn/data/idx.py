"""IDX files (the MNIST format): decoding with full validation, encoding, and their SHA-256.

An IDX file is: two zero bytes, a type code, the number of dimensions, one big-endian
uint32 per dimension, then the items, big-endian, row-major. Files may be gzipped;
gzip is recognised by its magic bytes, so a gunzipped file under a `.gz` name (or the
reverse) still reads.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from types import MappingProxyType

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.core.fsutil import atomic_write_bytes

GZIP_MAGIC = b"\x1f\x8b"

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


def gunzip_if_gzip(data: bytes, source: str) -> bytes:
    """Return `data` decompressed when it starts with the gzip magic, else unchanged.

    Raises DatasetError naming `source` when the gzip stream is corrupt or cut short.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        # EOFError is what a download cut mid-stream looks like.
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DatasetError(f"{source}: corrupt or truncated gzip data ({reason})") from e


def decode_idx(data: bytes, source: str) -> np.ndarray:
    """Decode IDX file content (gzipped or raw) into an array in native byte order.

    `source` names the file in error messages. Every inconsistency between the header
    and the content length raises DatasetError.
    """
    raw = gunzip_if_gzip(data, source)
    what = "decompressed content" if raw is not data else "file"
    if len(raw) < 4:
        raise DatasetError(f"{source}: {what} is {len(raw)} bytes, too short for an IDX header "
                           "(at least 4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{source}: not an IDX file (starts with {raw[:4].hex(' ')}; "
                           "expected 00 00, a type code and the number of dimensions)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise DatasetError(f"{source}: unknown IDX type code 0x{code:02X} "
                           f"(expected one of {_KNOWN_TYPES})")
    if ndim < 1:
        raise DatasetError(f"{source}: IDX header declares 0 dimensions (expected at least 1)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(f"{source}: {what} is {len(raw)} bytes, too short for an IDX header "
                           f"with {ndim} dimensions ({header_len} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    count = math.prod(shape)
    expected = header_len + count * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else f"{len(raw) - expected} trailing bytes"
        raise DatasetError(f"{source}: {what} is {len(raw)} bytes, but its header "
                           f"({_shape_text(shape, dtype)}) needs {expected} ({problem})")
    items = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len)
    # astype copies, which also makes the array writeable and drops the bytes buffer.
    return items.astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx_content(path: str | os.PathLike[str]) -> bytes:
    """Read a file and return its decompressed IDX content (gzip detected by magic bytes)."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from e
    return gunzip_if_gzip(data, source)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-byte-order array."""
    return decode_idx(read_idx_content(path), os.fspath(path))


def read_idx_with_sha256(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Read an IDX file and return (array, SHA-256 hex of its decompressed content).

    Decompresses once; this is what dataset verification uses.
    """
    raw = read_idx_content(path)
    return decode_idx(raw, os.fspath(path)), hashlib.sha256(raw).hexdigest()


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
