"""Image decoding and MNIST-style preprocessing (tfcnn.images: decode, digits, prepare): fast.

The helpers at the top draw digits the way people hand them to a classifier: large, dark on
light, off centre, a little rotated, printed (Pillow's scalable default font) or drawn with
pen strokes. test_predict.py uses them to measure the trained model on such images.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from support import digit_set, draw_digit
from tfcnn.core.errors import TfcnnError
from tfcnn.images.decode import ImageError, load_image
from tfcnn.images.digits import mnist_style
from tfcnn.images.prepare import prepare, resize_only


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def _bbox(array: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    rows, cols = np.nonzero(array > threshold)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def _centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(array.shape)
    return (rows * array).sum() / array.sum(), (cols * array).sum() / array.sum()


# --- load_image ---------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "fmt", "mode"), [
    ("png", "PNG", "L"), ("png", "PNG", "RGBA"), ("jpg", "JPEG", "RGB"), ("bmp", "BMP", "RGB"),
    ("gif", "GIF", "P"), ("webp", "WEBP", "RGB")])
def test_load_image_reads_every_supported_format(tmp_path, suffix, fmt, mode):
    image = draw_digit(3, canvas=(90, 70), size=60).convert(mode)
    loaded = load_image(_save(image, tmp_path / f"three.{suffix}", format=fmt))
    assert loaded.size == (90, 70)
    assert mnist_style(loaded).max() == pytest.approx(1.0)


def test_load_image_accepts_a_file_object_and_applies_exif_orientation():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (40, 20), "white").save(buffer, "JPEG", exif=exif)
    buffer.seek(0)
    assert load_image(buffer, name="upload.jpg").size == (20, 40)


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "empty file (0 bytes)"),
    (b"hello, not an image\n", "not a PNG, JPEG, BMP, GIF or WebP image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "not a PNG, JPEG, BMP, GIF or WebP image")])
def test_load_image_rejects_non_images_with_one_line_naming_the_file(tmp_path, content,
                                                                      expected):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message == f"{path}: {expected}" and "\n" not in message
    assert isinstance(caught.value, TfcnnError)


@pytest.mark.parametrize(("suffix", "fmt"), [("png", "PNG"), ("jpg", "JPEG")])
def test_load_image_rejects_truncated_files(tmp_path, suffix, fmt):
    whole = _save(draw_digit(5, canvas=(300, 300), size=200), tmp_path / f"w.{suffix}",
                  format=fmt).read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match=rf"^{path}: truncated or corrupt image"):
        load_image(path)


def test_load_image_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: cannot read \(No such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder|cannot read"):
        load_image(tmp_path)


@pytest.mark.parametrize("side", [40, 80])  # 1600 px: Pillow warns; 6400 px: Pillow refuses
def test_decompression_bombs_are_errors_not_warnings(tmp_path, monkeypatch, recwarn, side):
    path = _save(Image.new("L", (side, side), 255), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"bomb\.png: image too large"):
        load_image(path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


# --- mnist_style ----------------------------------------------------------------------------


def test_mnist_style_centres_a_large_dark_off_centre_digit_as_mnist_does():
    page = draw_digit(7, canvas=(400, 300), size=220, centre=(0.3, 0.62), angle=8)
    out = mnist_style(page)
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    # White ink on black: the border is background, the ink is bright.
    assert out[0].max() == out[-1].max() == out[:, 0].max() == out[:, -1].max() == 0
    assert max(_bbox(out, 0.05)) in (19, 20, 21)
    centre = np.array(_centre_of_mass(out))
    assert np.all(np.abs(centre - 14.0) <= 1.0), centre


def test_mnist_style_keeps_the_aspect_ratio():
    bar = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(bar).rectangle((140, 40, 159, 239), fill=0)  # 20 wide, 200 tall
    height, width = _bbox(mnist_style(bar), 0.5)
    assert height == 20 and width in (1, 2, 3)


def test_polarity_colours_and_transparency_give_the_same_digit():
    dark_on_light = mnist_style(draw_digit(2, ink=(20, 20, 20), paper=(235, 235, 235)))
    light_on_dark = mnist_style(draw_digit(2, ink=(235, 235, 235), paper=(20, 20, 20)))
    coloured = mnist_style(draw_digit(2, ink=(30, 40, 160), paper=(250, 240, 200)))
    transparent = draw_digit(2, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    on_white = mnist_style(transparent)
    for other in (light_on_dark, coloured, on_white):
        assert np.abs(other - dark_on_light).mean() < 0.02


def test_uneven_light_and_noise_are_removed():
    clean = mnist_style(draw_digit(4, canvas=(300, 240), size=180))
    page = np.asarray(draw_digit(4, canvas=(300, 240), size=180), dtype=np.float64)
    shade = np.linspace(1.0, 0.55, 300)[np.newaxis, :, np.newaxis]  # light from the left
    noise = np.random.default_rng(0).normal(0, 12, page.shape[:2])[..., np.newaxis]
    photo = Image.fromarray(np.clip(page * shade + noise, 0, 255).astype(np.uint8))
    out = mnist_style(photo)
    assert out[:3].max() == out[-3:].max() == 0
    assert np.abs(out - clean).mean() < 0.05


def test_blank_and_noise_only_images_give_an_empty_canvas():
    noise = np.random.default_rng(0).normal(200, 10, (120, 160)).clip(0, 255)
    for image in (Image.new("L", (50, 50), 128), Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
                  Image.fromarray(noise.astype(np.uint8))):
        out = mnist_style(image)
        assert out.shape == (28, 28) and not out.any()


def test_mnist_style_leaves_real_mnist_digits_nearly_unchanged(shared_datasets_dir):
    from tfcnn.data.locate import load_dataset

    digits = load_dataset("mnist", shared_datasets_dir, download=False,
                          progress=False).x_test[:200]
    changed = [np.abs(mnist_style(Image.fromarray(d)) - d / 255.0).mean() for d in digits]
    assert float(np.mean(changed)) < 0.01


# --- resize_only and prepare ----------------------------------------------------------------


def test_resize_only_resizes_converts_and_scales_without_inverting():
    rgba = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((0, 0, 31, 47), fill=(255, 0, 0, 255))
    grey = resize_only(rgba, 28, 28, 1)
    colour = resize_only(rgba, 32, 40, 3)
    assert grey.shape == (28, 28, 1) and colour.shape == (32, 40, 3)
    assert grey.dtype == colour.dtype == np.float32
    assert grey.min() >= 0.0 and grey.max() <= 1.0
    assert grey[14, -1, 0] == pytest.approx(1.0)  # transparent → white, not black
    np.testing.assert_allclose(colour[16, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(colour[16, -1], [1.0, 1.0, 1.0])


def test_resize_only_scales_16_bit_greys():
    deep = Image.fromarray(np.full((10, 10), 65535 // 2, dtype=np.uint16))
    assert resize_only(deep, 10, 10, 1).mean() == pytest.approx(0.5, abs=0.01)


def test_prepare_follows_the_models_preprocessing():
    page = draw_digit(9)
    mnist = prepare(page, "mnist", (28, 28, 1))
    assert mnist.shape == (28, 28, 1) and mnist.dtype == np.float32
    np.testing.assert_array_equal(mnist[..., 0], mnist_style(page))
    np.testing.assert_array_equal(prepare(page, "mnist", (28, 28, 1), preprocess=False),
                                  resize_only(page, 28, 28, 1))
    np.testing.assert_array_equal(prepare(page, None, (32, 32, 3)),
                                  resize_only(page, 32, 32, 3))
    assert prepare(page, "mnist", (28, 28, 3)).shape == (28, 28, 3)
    with pytest.raises(ValueError, match="prepare"):
        prepare(page, "zca", (28, 28, 1))


def test_drawn_set_is_varied_and_reproducible():
    first, again = digit_set(12, seed=3), digit_set(12, seed=3)
    assert [d for d, _ in first] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for (_, a), (_, b) in zip(first, again, strict=True))
    assert len({image.size for _, image in first}) > 6
