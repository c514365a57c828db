"""The one image decoder's guards (tfcnn.images.decode): only regular files are opened, and
what one decode may cost is capped before its pixels are allocated, in every path that
decodes (predict, serve uploads, folder training)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import finishes_in_time
from tfcnn.images import decode
from tfcnn.images.decode import MAX_DECODE_BYTES, ImageError, ImageTooLarge, load_image
from tfcnn.images.prepare import decode_for_model, model_input


def sparse_png(path: Path, width: int, height: int, *, bit_depth: int = 16,
               colour_type: int = 0) -> Path:
    """A PNG of black pixels written row by row: huge in pixels, tiny on disk (a soft bomb)."""
    channels = {0: 1, 2: 3, 3: 1, 6: 4}[colour_type]
    row = b"\0" * (1 + width * channels * bit_depth // 8)  # filter byte + samples

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    # A palette image: black and white, black transparent.
    palette = chunk(b"PLTE", b"\0\0\0\xff\xff\xff") + chunk(b"tRNS", b"\0") if (
        colour_type == 3) else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + palette
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


# --- regular files only ----------------------------------------------------------------------


def test_a_fifo_is_refused_without_being_read(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as caught:
        finishes_in_time(lambda: load_image(fifo))
    assert str(caught.value) == f"{fifo}: not a regular file (a FIFO)"


def test_a_device_and_a_socket_are_refused():
    with pytest.raises(ImageError, match=r"^/dev/zero: not a regular file \(a device\)$"):
        finishes_in_time(lambda: load_image("/dev/zero"))
    with tempfile.TemporaryDirectory() as folder:  # short: socket paths are limited to ~100
        path = Path(folder) / "s"
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(path))
            with pytest.raises(ImageError, match=r"not a regular file \(a socket\)$"):
                load_image(path)
        finally:
            server.close()


def test_missing_empty_and_folder_messages_are_distinct(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"nope\.png: cannot read \(No such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match=r"empty\.png: empty file \(0 bytes\)$"):
        load_image(empty)
    with pytest.raises(ImageError, match="is a folder, not an image file$"):
        load_image(tmp_path)


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    Image.new("L", (6, 4), 9).save(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert load_image(tmp_path / "link.png").size == (6, 4)


# --- the decode memory cap ------------------------------------------------------------------


def test_a_soft_bomb_png_is_refused_before_decoding(tmp_path):
    path = sparse_png(tmp_path / "bomb.png", 9400, 9400)  # issue 20's file
    assert path.stat().st_size < 400_000
    assert Image.MAX_IMAGE_PIXELS > 9400 * 9400  # Pillow's own limit lets it through
    with pytest.raises(ImageTooLarge) as caught:
        load_image(path)
    assert str(caught.value) == (f"{path}: image too large to decode (9400×9400, 338 MB; "
                                 f"the limit is {MAX_DECODE_BYTES >> 20} MB)")
    with pytest.raises(ImageTooLarge):
        model_input(path, None, (28, 28, 1))
    with pytest.raises(ImageTooLarge):
        model_input(path, "mnist", (28, 28, 1))


def test_the_cap_counts_four_bytes_per_pixel_whatever_the_mode(tmp_path, monkeypatch):
    """Any image may become RGBA and RGB on its way to a model: a grey or palette one too."""
    monkeypatch.setattr(decode, "MAX_DECODE_BYTES", 40_000)
    for bit_depth, colour_type in [(8, 0), (16, 0), (8, 2), (8, 3), (8, 6)]:
        at_cap = sparse_png(tmp_path / "ok.png", 100, 100, bit_depth=bit_depth,
                            colour_type=colour_type)
        assert load_image(at_cap).size == (100, 100)
        over = sparse_png(tmp_path / "over.png", 101, 100, bit_depth=bit_depth,
                          colour_type=colour_type)
        with pytest.raises(ImageTooLarge, match=r"too large to decode \(101×100, 1 MB; the "
                                                r"limit is 0 MB\)"):
            load_image(over)


def test_a_large_jpeg_decodes_reduced_under_the_cap(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr(decode, "MAX_DECODE_BYTES", 200_000)  # 800×600×4 = 1.9 MB
    image = load_image(path)
    assert image.size == (200, 150)  # 1/4 scale: 120,000 B; 1/2 would be 480,000 B
    assert decode_for_model(path, 28, 28, 3).shape == (28, 28, 3)
    png = tmp_path / "photo.png"
    Image.open(path).save(png)
    with pytest.raises(ImageTooLarge, match=r"\(800×600, 2 MB; the limit is 0 MB\)"):
        load_image(png)  # no cheap reduction for a PNG
    monkeypatch.setattr(decode, "MAX_DECODE_BYTES", 100)  # even 1/8 is over: refused
    with pytest.raises(ImageTooLarge):
        load_image(path)


def test_bytes_uploads_have_the_same_cap(tmp_path):
    data = sparse_png(tmp_path / "bomb.png", 9400, 9400).read_bytes()
    with pytest.raises(ImageTooLarge, match="^upload.png: image too large to decode"):
        decode.load_bytes(data, "upload.png")
    with pytest.raises(ImageError, match=r"^upload.png: empty file \(0 bytes\)$"):
        decode.load_bytes(b"", "upload.png")


_MEASURE = """
import sys
from pathlib import Path
import numpy as np

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from tfcnn.data.folders import load_image_folder
from tfcnn.images.decode import ImageError
from tfcnn.images.prepare import model_input
np.zeros(1)
bomb, small, root = sys.argv[1:4]
model_input(small, None, (28, 28, 1))
before = peak_mb()
for preprocessing in (None, "mnist"):
    try:
        model_input(bomb, preprocessing, (28, 28, 1))
        raise SystemExit("the bomb was decoded")
    except ImageError:
        pass
result = load_image_folder(Path(root), test_split=0)
assert [reason.split(" (")[0] for _, reason in result.skipped] == ["image too large to decode"]
print(peak_mb() - before)
"""


@pytest.mark.slow
def test_soft_bombs_keep_the_process_small(tmp_path):
    """Issue 20: this file cost 2.5-3 GB in predict, serve and folder training (2.3 GB
    measured with the decoder before the cap)."""
    bomb = sparse_png(tmp_path / "bomb.png", 9400, 9400)
    small = tmp_path / "small.png"
    Image.new("L", (28, 28), 50).save(small)
    root = tmp_path / "folder"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.new("L", (28, 28), 50).save(root / name / "ok.png")
    (root / "a" / "bomb.png").write_bytes(bomb.read_bytes())
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(bomb), str(small), str(root)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    growth_mb = float(done.stdout)
    assert growth_mb < 60, f"peak memory grew by {growth_mb:.0f} MB"


_AT_THE_CAP = """
import sys
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from tfcnn.images.prepare import model_input
before = peak_mb()
assert model_input(sys.argv[1], None, (28, 28, 3)).shape == (28, 28, 3)
print(peak_mb() - before)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("bit_depth", "colour_type"), [(8, 6), (8, 3), (8, 0)])
def test_an_image_at_the_cap_costs_a_few_times_the_cap(tmp_path, bit_depth, colour_type):
    """RGBA, palette with transparency, grey: each made an RGB model input at the cap."""
    side = int((MAX_DECODE_BYTES // 4) ** 0.5)
    path = sparse_png(tmp_path / "big.png", side, side, bit_depth=bit_depth,
                      colour_type=colour_type)
    done = subprocess.run([sys.executable, "-c", _AT_THE_CAP, str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    growth_mb = float(done.stdout)
    assert growth_mb < 3 * (MAX_DECODE_BYTES >> 20), f"peak memory grew by {growth_mb:.0f} MB"


def test_a_jpeg_reduced_for_the_model_still_respects_the_cap(tmp_path, monkeypatch):
    """`min_size` asks for at least max(H, W) per side; the cap may ask for more reduction."""
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (800, 800), (200, 100, 50)).save(path)
    monkeypatch.setattr(decode, "MAX_DECODE_BYTES", 50_000)  # 1/8: 100×100×4 = 40,000 B
    assert load_image(path, min_size=(300, 300)).size == (100, 100)
    assert decode_for_model(path, 300, 300, 3).shape == (300, 300, 3)


def test_a_multi_picture_jpeg_is_reduced_as_a_jpeg(tmp_path, monkeypatch):
    path = tmp_path / "camera.jpg"  # many cameras write MPO: JPEG pictures one after another
    first, second = Image.new("RGB", (800, 600), "red"), Image.new("RGB", (800, 600), "blue")
    first.save(path, "MPO", save_all=True, append_images=[second])
    assert load_image(path, min_size=(28, 28)).size == (100, 75)
    monkeypatch.setattr(decode, "MAX_DECODE_BYTES", 500_000)
    assert load_image(path).size == (400, 300)  # 1/2: 480,000 B
