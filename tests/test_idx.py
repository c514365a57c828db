"""IDX decoding, encoding and validation (tfcnn.data.idx)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from tfcnn.core.errors import DatasetError
from tfcnn.data.idx import (
    decode_idx,
    encode_idx,
    read_idx,
    read_idx_with_sha256,
    sha256_of_idx,
    write_idx,
)

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_exact(tmp_path, dtype, suffix):
    array = _sample(dtype, (5, 4, 3))
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (5, 4, 3)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp left behind


@pytest.mark.parametrize("shape", [(7,), (0,), (2, 3), (1, 2, 3, 4)])
def test_round_trip_shapes(shape):
    array = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    back = decode_idx(encode_idx(array), "mem")
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_encoding_matches_the_format_byte_for_byte():
    data = encode_idx(np.array([[1, 2, 3], [4, 5, 256]], dtype=np.int16))
    assert data[:4] == bytes([0, 0, 0x0B, 2])
    assert data[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert data[12:] == b"\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x01\x00"  # big-endian


def test_encode_accepts_big_endian_and_non_contiguous_input():
    base = np.arange(24, dtype=">i4").reshape(4, 6)
    view = base[:, ::2]
    assert encode_idx(view) == encode_idx(np.ascontiguousarray(view, dtype="<i4"))


def test_gzip_detected_by_content_not_suffix(tmp_path):
    array = _sample("uint8", (3, 2))
    gz_without_suffix = tmp_path / "data-idx2-ubyte"
    gz_without_suffix.write_bytes(gzip.compress(encode_idx(array)))
    raw_with_gz_suffix = tmp_path / "data-idx2-ubyte.gz"
    raw_with_gz_suffix.write_bytes(encode_idx(array))
    np.testing.assert_array_equal(read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), array)


def test_gz_output_is_reproducible(tmp_path):
    array = _sample("uint8", (10, 10))
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_sha256_is_digest_of_decompressed_file(tmp_path):
    array = _sample("uint8", (6, 28, 28))
    path = tmp_path / "x.gz"
    write_idx(path, array)
    expected = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    assert sha256_of_idx(array) == expected
    back, digest = read_idx_with_sha256(path)
    assert digest == expected
    np.testing.assert_array_equal(back, array)
    assert sha256_of_idx(array[::-1]) != expected


GOOD = encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))  # header 12 bytes + 12 items


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "is 0 bytes, too short for an IDX header"),
    (b"\x00\x00", "is 2 bytes, too short for an IDX header"),
    (b"\x01\x02\x08\x01" + bytes(8), "not an IDX file (starts with 01 02 08 01"),
    (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + bytes(3), "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x03" + bytes(4), "too short for an IDX header with 3 dimensions (16 bytes)"),
    (GOOD[:-1], "is 23 bytes, but its header (3x4 uint8) needs 24 (truncated)"),
    (GOOD + b"\x00\x00", "is 26 bytes, but its header (3x4 uint8) needs 24 (2 trailing bytes)"),
])
def test_malformed_files_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad-idx2-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as exc:
        read_idx(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert "\n" not in message


def test_truncated_header_of_a_big_file_reports_expected_size():
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    with pytest.raises(DatasetError, match=r"^/x/train-images-idx3-ubyte.gz: decompressed "
                       r"content is 1016 bytes, but its header \(60000x28x28 uint8\) needs "
                       r"47040016 \(truncated\)$"):
        decode_idx(gzip.compress(header + bytes(1000)), "/x/train-images-idx3-ubyte.gz")


@pytest.mark.parametrize("damage", ["cut", "flipped", "crc"])
def test_corrupt_gzip_names_the_file(tmp_path, damage):
    gz = bytearray(gzip.compress(encode_idx(_sample("uint8", (50, 28, 28)))))
    if damage == "cut":
        gz = gz[: len(gz) // 2]
    elif damage == "flipped":
        gz[20:40] = bytes(20)
    else:
        gz[-8] ^= 0xFF  # stored CRC32
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(DatasetError, match=r"corrupt or truncated gzip data") as exc:
        read_idx(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.gz"
    with pytest.raises(DatasetError, match=r"nope\.gz: cannot read"):
        read_idx(path)


@pytest.mark.parametrize("array", [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool),
                                   np.zeros(3, dtype=np.uint16), np.array(5, dtype=np.uint8)])
def test_unencodable_arrays_are_rejected(array, tmp_path):
    with pytest.raises(DatasetError, match=r"^array: "):
        encode_idx(array)
    with pytest.raises(DatasetError):
        write_idx(tmp_path / "a.gz", array)
    assert list(tmp_path.iterdir()) == []


# --- gzip bombs: bounded by what the header declares --------------------------------------

def gzip_bomb(prefix: bytes, zeros_mib: int) -> bytes:
    """A valid gzip of `prefix` + `zeros_mib` MiB of zeros, about 1 KiB per MiB.

    After a full flush deflate starts afresh, so one compressed MiB of zeros is repeated.
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = zlib.crc32(prefix), bytes(1 << 20)
    for _ in range(zeros_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(prefix) + (zeros_mib << 20)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + first + block * zeros_mib
            + co.flush() + struct.pack("<II", crc, size))


@pytest.fixture(scope="module")
def bomb_2gib() -> bytes:
    data = gzip_bomb(encode_idx(np.zeros((20, 28, 28), np.uint8)), 2048)
    assert len(data) < 3 << 20  # a small file ...
    return data


def test_bomb_fixture_really_inflates():
    data = gzip_bomb(b"abc", 3)
    assert gzip.decompress(data) == b"abc" + bytes(3 << 20)


_MEASURE = """
import sys
from tfcnn.core.errors import DatasetError
from tfcnn.data.idx import read_idx

def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

before = peak_kib()
try:
    read_idx(sys.argv[1])
    print("no error")
except DatasetError as e:
    print(e)
print((peak_kib() - before) // 1024)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_gzip_bomb_costs_little_memory_and_gives_one_line(tmp_path, bomb_2gib):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bomb_2gib)  # ... that decompresses to 2 GiB
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    message, growth_mib = out[0], int(out[1])
    assert message == (f"{path}: decompressed content is at least {15696 + (1 << 20)} bytes, "
                       "but its header (20x28x28 uint8) needs 15696 (at least 1048576 "
                       "trailing bytes)")
    assert growth_mib < 200, f"reading a 2 MiB gzip bomb grew the peak memory by {growth_mib} MiB"


def test_header_larger_than_allowed_is_refused_before_reading(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip_bomb(b"\x00\x00\x08\x01" + (1 << 31).to_bytes(4, "big"), 4))
    with pytest.raises(DatasetError) as exc:
        read_idx(path, max_bytes=10008)
    assert str(exc.value) == (f"{path}: its header (2147483648 uint8) declares 2147483656 "
                              "bytes; this file has at most 10008 (not read further)")


def test_raw_file_shorter_than_its_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big")
                                                     for d in (4000000000, 4000, 4000)))
    with pytest.raises(DatasetError, match=r"file is 16 bytes, but its header .* needs "
                       r"64000000000000016 \(truncated\)$"):
        read_idx(path)
