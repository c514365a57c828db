"""Opening and decoding image files and bytes safely: the one place an image is decoded.

`load_image` turns a path or a binary file object into an upright Pillow image (first frame,
EXIF orientation applied) or raises `ImageError` with one line naming the file. It:

- opens only regular files (a FIFO, socket or device such as /dev/zero is refused before it
  is read, so nothing can hang on it);
- reads PNG, JPEG, BMP, GIF and WebP only (`FORMATS`), whatever the file's name;
- caps what one decode may cost (`MAX_DECODE_BYTES`, pixels × 4 bytes: the RGBA or RGB copy
  any image may need on its way to a model input), raising `ImageTooLarge` before the
  pixels are allocated: a 194 KB 16-bit PNG of 9400×9400 px would otherwise cost 2-3 GB.
  A JPEG over the cap is first decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling:
  cheap, and still plenty for a model input), so big photos still work;
- can decode a JPEG at reduced scale on purpose (`min_size`), never below that size: the
  folder loader and prediction pass the same `min_size` (`tfcnn.images.prepare`), so both
  see the same pixels.

`flatten` converts any decoded image to "L" or "RGB" (transparency on white, 16-bit greys
scaled, not clipped). Pillow and numpy only: no TensorFlow.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tfcnn.core.errors import ImageError, ImageTooLarge

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
FORMATS_TEXT = "PNG, JPEG, BMP, GIF or WebP"
MB = 1 << 20
# What one decode may cost, counted as 4 bytes per pixel whatever the file holds: the RGBA or
# RGB copy that any image (a grey or palette one too) may need on its way to a model input.
# 64 MB: 16 megapixels (a 12 Mpx phone photo, 4032×3024, is 47 MB); JPEGs up to 8× those
# sides via DCT scaling. Counting the decoded mode's own bytes instead (1 for grey or
# palette) would let a 64-megapixel palette PNG with transparency grow to 640 MB as RGBA and
# RGB. Measured (tests/test_images_decode.py), process growth for a PNG at the cap made an RGB
# model input: 162 MB with palette and transparency, 146 RGBA, 124 16-bit grey, 82 grey;
# issue 20's 16-bit 9400×9400 PNG is refused for 2.4 MB, where decoding it took 2.3 GB.
MAX_DECODE_BYTES = 64 * MB
_JPEG_SCALES = (1, 2, 4, 8)
# Pillow calls a JPEG holding several pictures (many phones and cameras write them) "MPO";
# its first picture decodes, and scales, as any JPEG.
_JPEG_FORMATS = ("JPEG", "MPO")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


WORKING_BYTES_PER_PIXEL = 4


def decode_cost(size: tuple[int, int]) -> int:
    """What decoding and converting an image of `size` (W, H) may cost, in bytes."""
    return size[0] * size[1] * WORKING_BYTES_PER_PIXEL


Source = str | bytes | os.PathLike[str] | BinaryIO


def load_image(source: Source, name: str | None = None, *,
               min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode a PNG, JPEG, BMP, GIF or WebP image fully (first frame), upright per its EXIF.

    `source` is a path (`str`, `bytes` as `tf.numpy_function` passes it, or `PathLike`) or
    a binary file object (for image data in memory, `load_bytes`); `name` is what error
    messages call it (default: the path). `min_size` (height, width), when given, lets a
    JPEG decode at 1/2, 1/4 or 1/8 scale as long as both sides stay at least the larger of
    the two (EXIF may swap them). Raises `ImageError` (one line naming the file) for
    anything it cannot use, and `ImageTooLarge` for an image over `MAX_DECODE_BYTES` or
    Pillow's `Image.MAX_IMAGE_PIXELS`, before decoding its pixels.
    """
    if isinstance(source, bytes):  # a path from tf.numpy_function, not image data
        source = os.fsdecode(source)
    is_path = isinstance(source, str | os.PathLike)
    label = name or (os.fspath(source) if is_path else "image")
    if not is_path:
        return _decode(source, label, min_size)
    with _open_regular(source, label) as file:
        return _decode(file, label, min_size)


def probe_image(path: str | os.PathLike[str], *,
                min_size: tuple[int, int] | None = None) -> None:
    """Check a file as `load_image` would, from its header only: no pixels are decoded.

    Raises the `ImageError` `load_image` would raise for a file that is not a regular,
    non-empty PNG, JPEG, BMP, GIF or WebP file, or that is over the decode limits. A file
    damaged after its header (truncated data) passes and fails only when decoded. About
    45 µs a small JPEG against ~300 µs to decode it (measured on fashion_photos): streaming a
    folder checks every file this way before training.
    """
    label = os.fspath(path)
    with _open_regular(path, label) as file:
        _decode(file, label, min_size, load=False)


def _open_regular(path: str | os.PathLike[str], label: str) -> BinaryIO:
    """`path` opened for reading if it is a non-empty regular file, else `ImageError`."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    _check_regular(info, label)
    try:
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it cannot hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    file = os.fdopen(fd, "rb")
    try:
        _check_regular(os.fstat(fd), label)
        os.set_blocking(fd, True)
    except BaseException:
        file.close()
        raise
    return file


def _check_regular(info: os.stat_result, label: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{label}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{label}: not a regular file ({file_kind(info.st_mode)})")
    if info.st_size == 0:
        raise ImageError(f"{label}: empty file (0 bytes)")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words: "a FIFO", "a device", "a socket", ..."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _decode(source: BinaryIO, label: str, min_size: tuple[int, int] | None,
            load: bool = True) -> Image.Image:
    try:
        # Pillow only warns between 1x and 2x its pixel limit; we refuse both. The explicit
        # size check below holds even if another thread changes the warning filters meanwhile.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as opened:
                _check_pixels(opened, label)
                _reduce_jpeg(opened, label, min_size)
                if not load:  # probe_image: the header was all it asked for
                    return opened
                opened.load()
                # In place: a copy would double the memory of a large image for a moment.
                ImageOps.exif_transpose(opened, in_place=True)
                return opened
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{label}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not a {FORMATS_TEXT} image") from exc
    except MemoryError as exc:
        raise ImageTooLarge(f"{label}: image too large to decode (out of memory)") from exc
    except OSError as exc:
        # Pillow reports truncated or corrupt data as OSError ("image file is truncated").
        if exc.strerror:
            raise ImageError(f"{label}: cannot read ({exc.strerror})") from exc
        raise ImageError(f"{label}: truncated or corrupt image ({_one_line(exc)})") from exc
    except Exception as exc:
        # A damaged file can make a Pillow plugin raise nearly anything (SyntaxError,
        # struct.error, IndexError, ValueError, ...): all of them mean a corrupt image.
        raise ImageError(f"{label}: corrupt image ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_pixels(image: Image.Image, label: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit and width * height > limit:
        raise ImageTooLarge(f"{label}: image too large ({width}×{height} = "
                            f"{width * height:,} pixels; the limit is {limit:,})")


def _reduce_jpeg(image: Image.Image, label: str, min_size: tuple[int, int] | None) -> None:
    """Pick the JPEG's DCT scale (a no-op for other formats), then check the decode's cost.

    The scale is the larger of: the largest keeping both sides ≥ max(`min_size`), and the
    smallest bringing the cost under `MAX_DECODE_BYTES`.
    """
    width, height = image.size
    request = (width, height)
    if min_size is not None:
        side = max(1, *min_size)
        request = (min(width, side), min(height, side))
    is_jpeg = image.format in _JPEG_FORMATS
    if is_jpeg and decode_cost((width, height)) > MAX_DECODE_BYTES:
        for scale in _JPEG_SCALES[1:]:
            reduced = (math.ceil(width / scale), math.ceil(height / scale))
            if decode_cost(reduced) <= MAX_DECODE_BYTES:
                break
        request = (min(request[0], max(1, width // scale)),
                   min(request[1], max(1, height // scale)))
    if is_jpeg and request != (width, height):
        image.draft(image.mode, request)
    if decode_cost(image.size) > MAX_DECODE_BYTES:
        cost = math.ceil(decode_cost((width, height)) / MB)
        raise ImageTooLarge(f"{label}: image too large to decode ({width}×{height}, {cost} MB; "
                            f"the limit is {MAX_DECODE_BYTES // MB} MB)")


def flatten(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode` ("L" or "RGB"): any transparency composited on white, 16- and 32-bit
    greys scaled to 8 bits (Pillow's own convert would clip them), other modes via RGB."""
    if image.mode in (*_SIXTEEN_BIT, "I", "F"):
        image = _eight_bit_grey(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB", "1") and "transparency" in image.info)
    if has_alpha:
        # Pasted through its alpha onto white: one RGB copy, where alpha_composite made three.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode not in ("1", "L", "P", "RGB", mode):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: via RGB, a known path to L
    return image if image.mode == mode else image.convert(mode)


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    """A 16-bit ("I;16*", or "I" over 255) grey scaled by 255/65535, rounded; "I" up to 255
    kept; "F" in [0, 1] scaled by 255, else clipped to 0-255. Row blocks bound the memory."""
    values = np.asarray(image)
    top = values.max(initial=0)
    out = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, values.shape[1]))
    for start in range(0, values.shape[0], rows):
        block = values[start:start + rows]
        if image.mode == "F":
            block = np.clip(np.rint(block * (255.0 if top <= 1.0 else 1.0)), 0, 255)
        elif image.mode in _SIXTEEN_BIT or top > 255:
            # (x + 128) // 257 = round(x / 257) exactly: x / 257 is never a tie.
            block = (block.astype(np.uint32) + 128) // 257
        else:
            block = np.clip(block, 0, 255)
        out[start:start + rows] = block
    return Image.fromarray(out)


def load_bytes(data: bytes, name: str, *, min_size: tuple[int, int] | None = None
               ) -> Image.Image:
    """`load_image` for an uploaded file's bytes (an empty upload is an `ImageError`)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    return load_image(io.BytesIO(data), name=name, min_size=min_size)
