"""Model inputs from arrays, files and bytes (tfcnn.images.prepare): `image_from_array`'s
checks, `model_input`'s dispatch and errors, `decode_for_model` inside `tf.numpy_function`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support import draw_digit
from tfcnn.core.errors import TfcnnError
from tfcnn.images.decode import ImageError, load_image
from tfcnn.images.prepare import decode_for_model, image_from_array, model_input, prepare


@pytest.mark.parametrize(("shape", "mode"), [((5, 7), "L"), ((5, 7, 1), "L"),
                                             ((5, 7, 3), "RGB"), ((5, 7, 4), "RGBA")])
def test_image_from_array_shapes(shape, mode):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = image_from_array(pixels)
    assert image.mode == mode and image.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(image), pixels.reshape(np.asarray(image).shape))
    # Floats in [0, 1] are the same pixels scaled: they come back exactly.
    again = image_from_array((pixels / 255.0).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(image))


@pytest.mark.parametrize(("array", "expected"), [
    (np.zeros(5, np.uint8), "expected an image array of shape H×W, H×W×1, H×W×2 (grey and "
                            "alpha), H×W×3 or H×W×4, got 5"),
    (np.zeros((2, 5, 5, 3), np.uint8), "got 2×5×5×3"),
    (np.zeros((5, 5, 5), np.uint8), "got 5×5×5"),
    (np.uint8(3), "got a scalar"),
    (np.zeros((0, 5), np.uint8), "empty image array (shape 0×5)"),
    (np.full((4, 4), 255, np.int64), "expected uint8 pixels (0-255) or floats (0-1), got dtype "
                                     "int64"),
    (np.zeros((4, 4), bool), "got dtype bool"),
    (np.full((4, 4), 255.0), "float values outside [0, 1] (got 255 to 255; scale 0-255 "
                             "pixels by 1/255, or pass uint8)"),
    (np.full((4, 4), -0.5, np.float32), "outside [0, 1]"),
    (np.full((4, 4), np.nan), "NaN or infinite values"),
])
def test_image_from_array_refuses_with_one_line_naming_the_input(array, expected):
    with pytest.raises(ImageError) as caught:
        image_from_array(array, name="inputs[2]")
    message = str(caught.value)
    assert message.startswith("inputs[2]: ") and expected in message and "\n" not in message
    assert isinstance(caught.value, TfcnnError)


def test_model_input_follows_the_models_preprocessing(tmp_path):
    path = tmp_path / "digit.png"
    draw_digit(4, canvas=(120, 90), size=70).save(path)
    image = load_image(path)
    np.testing.assert_array_equal(model_input(path, "mnist", (28, 28, 1)),
                                  prepare(image, "mnist", (28, 28, 1)))
    np.testing.assert_array_equal(model_input(path, None, (28, 28, 1)),
                                  prepare(image, None, (28, 28, 1)))  # a PNG: no reduction
    with pytest.raises(ValueError, match="prepare"):
        model_input(path, "zca", (28, 28, 1))


def test_model_input_errors_name_the_file(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(ImageError, match=rf"^{bad}: not a PNG, JPEG, BMP, GIF or WebP image$"):
        model_input(bad, None, (28, 28, 1))
    with pytest.raises(ImageError, match=r"^upload\.png: not a PNG"):
        model_input(io.BytesIO(b"hello"), None, (28, 28, 1), name="upload.png")
    with pytest.raises(ValueError, match="channels"):
        decode_for_model(io.BytesIO(_png()), 8, 8, 2)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_decode_for_model_runs_inside_tf_numpy_function(tmp_path):
    """Issue 17 streams folders through tf.data: the same decoder, called from the graph."""
    import tensorflow as tf

    paths = []
    for i, colour in enumerate([(250, 0, 0), (0, 0, 250)]):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.new("RGB", (300, 200), colour).save(paths[-1])

    def decode(path: tf.Tensor) -> tf.Tensor:
        pixels = tf.numpy_function(lambda p: decode_for_model(p, 16, 24, 3), [path], tf.uint8)
        return tf.ensure_shape(pixels, (16, 24, 3))

    got = [x.numpy() for x in tf.data.Dataset.from_tensor_slices(paths).map(decode)]
    for path, pixels in zip(paths, got, strict=True):
        np.testing.assert_array_equal(pixels, decode_for_model(path, 16, 24, 3))
