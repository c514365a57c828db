"""One image-decoding path (issue 16): for a folder-trained model's settings, the pixels that
training stored for a file are, bit for bit, what prediction feeds for that file (× 255), for
every kind of file a user drops in a folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfcnn.data.folders import load_image_folder
from tfcnn.images.decode import load_image
from tfcnn.images.prepare import (
    decode_for_model,
    image_from_array,
    model_input,
    prepare,
    resize_only,
    to_pixels,
)
from tfcnn.predict import model_inputs


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour picture with some detail (JPEG-friendly, resize-sensitive)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    picture = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y)], -1)
    picture = (picture + 1) * 110 + rng.normal(0, 12, (height, width, 3))
    return np.clip(picture, 0, 255).astype(np.uint8)


def write_fixtures(root: Path) -> dict[str, Path]:
    """One file of each kind, each alone in its class folder (so its label names it)."""
    scene = _scene(300, 400, 0)
    grey16 = (np.linspace(0, 65535, 300 * 200).reshape(300, 200)).astype(np.uint16)
    rgba = np.dstack([scene[:240, :320], np.linspace(0, 255, 320, dtype=np.uint8)[None, :]
                      .repeat(240, 0)])
    palette = Image.fromarray(scene[:90, :120]).convert("P", palette=Image.Palette.ADAPTIVE)
    images = {
        "png": (Image.fromarray(scene[:150, :170]), {}),
        "jpeg": (Image.fromarray(scene), {"quality": 85}),  # big enough to decode reduced
        "png16": (Image.fromarray(grey16), {}),
        "rgba": (Image.fromarray(rgba), {}),
        "palette": (palette, {}),
        "palette-transparent": (palette, {"transparency": 3}),
    }
    files = {}
    for kind, (image, options) in images.items():
        (root / kind).mkdir(parents=True)
        files[kind] = root / kind / ("x.jpg" if kind == "jpeg" else "x.png")
        image.save(files[kind], **options)
    return files


def preprocessor(shape):
    from tfcnn.images.preprocessor import Preprocessor

    return Preprocessor(shape)



@pytest.mark.parametrize(("size", "channels"), [((28, 28), 1), ((32, 32), 3), ((19, 33), 3),
                                                ((40, 24), 1)])
def test_training_pixels_are_what_prediction_feeds(tmp_path, size, channels):
    files = write_fixtures(tmp_path / "folder")
    result = load_image_folder(tmp_path / "folder", image_size=size, grayscale=channels == 1,
                               test_split=0)
    assert result.skipped == []
    ds = result.dataset
    assert len(ds.y_train) == len(files)
    shape = (*size, channels)
    for stored, label in zip(ds.x_train, ds.y_train, strict=True):
        path = files[ds.class_names[label]]
        trained = stored.reshape(shape)
        fed = model_input(path, None, shape)  # predict and the API, for a file
        upload = model_input(io.BytesIO(path.read_bytes()), None, shape, name="x")  # serve
        assert fed.dtype == np.float32 and fed.shape == shape
        np.testing.assert_array_equal(fed, trained.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(upload, fed)
        # `tfcnn predict` and `Classifier.predict` prepare their inputs with model_inputs.
        batch, _ = model_inputs([str(path), path], None, shape)
        np.testing.assert_array_equal(batch, np.stack([fed, fed]))
        # The model's own preprocessing (in model.keras) scales training's pixels to the
        # same input, in numpy and in its graph.
        np.testing.assert_array_equal(preprocessor(shape).to_input(trained[None])[0], fed)
        np.testing.assert_array_equal(preprocessor(shape)(trained[None]).numpy()[0], fed)
        np.testing.assert_array_equal(decode_for_model(path, *shape), trained)
        # Digit models' --no-preprocess gives the same pixels too.
        np.testing.assert_array_equal(model_input(path, "mnist", shape, preprocess=False), fed)
        # Training's own array, handed to prediction as uint8 or as float 0-1, comes back
        # unchanged (the API's numpy inputs).
        for array in (trained, trained / 255.0):
            np.testing.assert_array_equal(prepare(image_from_array(array), None, shape), fed)


def test_the_jpeg_is_decoded_reduced_in_both_paths(tmp_path):
    """Why prediction must decode files through `model_input`: the reduced JPEG decode (a
    speed-up measured in docs/benchmarks.md) gives other pixels than a full decode."""
    path = write_fixtures(tmp_path)["jpeg"]
    assert load_image(path, min_size=(32, 32)).size == (50, 38)  # 1/8 of 400×300
    assert load_image(path, min_size=(70, 40)).size == (100, 75)  # ≥ 70 per side: 1/4
    assert load_image(path, min_size=(40, 80)).size == (200, 150)  # 1/4 is under 80
    reduced = decode_for_model(path, 32, 32, 3)
    full = to_pixels(load_image(path), 32, 32, 3)
    assert not np.array_equal(reduced, full)
    assert np.abs(reduced.astype(int) - full).mean() < 6  # close: the same picture


def test_resize_only_is_to_pixels_over_255():
    image = Image.fromarray(_scene(50, 70, 1))
    for channels in (1, 3):
        pixels = to_pixels(image, 21, 17, channels)
        assert pixels.dtype == np.uint8 and pixels.shape == (21, 17, channels)
        np.testing.assert_array_equal(resize_only(image, 21, 17, channels),
                                      pixels.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize(("size", "channels"), [((32, 32), 3), ((28, 28), 1)])
def test_the_servers_upload_feeds_the_training_pixels(tmp_path, size, channels):
    # The server's own upload handler (POST /predict, the page), not only the decoder.
    from tfcnn.models.network import build_model
    from tfcnn.models.trained import TrainedModel
    from tfcnn.serve.model import ServedModel

    files = write_fixtures(tmp_path / "folder")
    shape = (*size, channels)
    served = ServedModel(TrainedModel(build_model("D2", shape, ("a", "b"), seed=0)), "m")
    ds = load_image_folder(tmp_path / "folder", image_size=size, grayscale=channels == 1,
                           test_split=0).dataset
    for stored, label in zip(ds.x_train, ds.y_train, strict=True):
        path = files[ds.class_names[label]]
        uploaded = served.prepare_upload(path.read_bytes(), path.name)
        np.testing.assert_array_equal(uploaded, stored.reshape(shape).astype(np.float32) / 255)
