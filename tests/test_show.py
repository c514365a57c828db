"""`tfcnn show` and `tfcnn.steer.show`: the grid of training images after augmentation is
the training step's own batch, repeatable by seed, changed by the augmentation flags, and
written as a PNG of the expected size; bad options are one line with status 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from support import make_shapes
from tfcnn.cli import main
from tfcnn.steer import show

LIMIT = 200  # training images: the shuffle and the batches stay tiny


@pytest.fixture
def digits(shared_datasets_dir) -> dict:
    return {"dataset": "mnist", "data_dir": str(shared_datasets_dir), "limit_train": LIMIT}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    """An image folder of 3 classes of coloured shapes, 12 each, in several formats."""
    return "folder:" + str(make_shapes(tmp_path_factory.mktemp("show") / "shapes", 12))


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_the_cli_writes_a_labelled_grid_of_the_expected_size(digits, tmp_path, capsys):
    png = tmp_path / "grid.png"
    argv = ["show", "--dataset", "mnist", "--data-dir", digits["data_dir"], "--limit-train",
            str(LIMIT), "--shift", "2", "--rotate", "10", "--count", "6", "--seed", "1",
            "--out", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Wrote {png}: 6 training image(s) of mnist, seed 1" in out
    assert "shift=2, rotate=10" in out
    with Image.open(png) as image:
        image.verify()
    columns, rows = 3, 2  # 6 cells: the nearest square grid
    expected = (round(columns * show.CELL_INCHES * show.DPI),
                round((rows * (show.CELL_INCHES + 0.15) + 0.5) * show.DPI))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == expected
    first = _pixels(png)
    assert main(argv) == 0  # the same seed: the very same picture
    assert np.array_equal(_pixels(png), first)
    assert main([*argv[:-4], "--seed", "2", "--out", str(png)]) == 0
    assert not np.array_equal(_pixels(png), first)


def test_augmentation_changes_the_images_not_the_batch(digits):
    plain = show.augmented_batch(digits, count=8, seed=3)
    warped = show.augmented_batch(digits, count=8, seed=3, shift=3.0, rotate=20.0)
    again = show.augmented_batch(digits, count=8, seed=3, shift=3.0, rotate=20.0)
    assert plain.images.shape == (8, 28, 28, 1) and plain.images.dtype == np.float32
    assert np.array_equal(plain.labels, warped.labels)  # the same shuffled images
    assert np.array_equal(warped.images, again.images)
    assert all(not np.array_equal(a, b) for a, b in zip(plain.images, warped.images,
                                                        strict=True))
    assert warped.images.min() >= 0.0 and warped.images.max() <= 1.0
    # Without augmentation the images are the stored pixels scaled to [0, 1].
    assert np.array_equal(plain.images * 255, np.round(plain.images * 255))
    # More images than a batch: the next steps' batches, each with its step's draws.
    two_steps = show.augmented_batch(digits, count=20, seed=3, shift=3.0, batch_size=16)
    one_step = show.augmented_batch(digits, count=16, seed=3, shift=3.0, batch_size=16)
    assert len(two_steps.images) == 20
    assert np.array_equal(two_steps.images[:16], one_step.images)


def test_titles_are_the_class_names(digits):
    figure = show.show_batch(digits, count=5, seed=0, zoom=0.1)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    batch = show.augmented_batch(digits, count=5, seed=0, zoom=0.1)
    assert titles == [str(label) for label in batch.labels]
    assert len(figure.axes) == 6  # 3 columns by 2 rows, the last cell blank


def _recorded_first_step(config, batch_size: int) -> np.ndarray:
    """The images the compiled training step fed its network in the run's first step."""
    import keras
    import tensorflow as tf

    from tfcnn.data.source import load_training_data
    from tfcnn.training.feeds import make_feeds
    from tfcnn.training.recipe import augmentation_of, photo_augmentation_of
    from tfcnn.training.start import fit_data
    from tfcnn.training.steps import make_steps

    dataset, _ = load_training_data(config)
    data = fit_data(config, dataset)
    shape = data.x_train.shape[1:] if data.x_train.ndim == 4 else (*data.x_train.shape[1:], 1)

    class Recorder(keras.layers.Layer):
        def build(self, input_shape):
            self.seen = self.add_weight(shape=(batch_size, *shape), initializer="zeros",
                                        trainable=False)

        def call(self, images):
            self.seen.assign(images)
            return images

    recorder = Recorder()
    model = keras.Sequential([keras.Input(shape), recorder, keras.layers.Flatten(),
                              keras.layers.Dense(len(dataset.class_names))])
    steps = make_steps(model, keras.optimizers.Adam(), tuple(shape), seed=config.seed,
                       augmentation=augmentation_of(config),
                       photo=photo_augmentation_of(config))
    feeds = make_feeds(data, config, None)
    steps.train(iter(feeds.train_batches(config, 1, 0)), tf.constant(1, tf.int64))
    return recorder.seen.numpy()


@pytest.mark.parametrize("settings", [
    {"shift": 2.0, "rotate": 15.0, "elastic": 8.0, "erase": 0.5},
    {"preset": "photo", "mixup": 0.4, "image_size": "20", "grayscale": False},
], ids=["digits-affine-elastic", "photo-crop-jitter-mixup"])
def test_the_grid_is_what_the_training_step_sees(settings, digits, shapes):
    dataset = {"dataset": shapes} if "preset" in settings else digits
    config = show.training_settings({**dataset, **settings, "batch_size": 12, "seed": 5})
    batch = show.augmented_batch(config, count=12)
    seen = _recorded_first_step(batch.config, 12)
    assert batch.images.shape == seen.shape
    np.testing.assert_allclose(batch.images, seen, atol=2e-5)
    if "mixup" in settings:
        assert (batch.weights < 1).any()
        assert any("+" in batch.title(i) for i in range(12))


def test_a_colour_folder_with_a_preset_gives_a_colour_grid(shapes, tmp_path, capsys):
    png = tmp_path / "photos.png"
    assert main(["show", "--dataset", shapes, "--preset", "photo", "--image-size", "24",
                 "--rgb", "--count", "4", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "crop_area=" in out and "seed 0" in out
    pixels = _pixels(png)
    assert (pixels[..., 0] != pixels[..., 1]).any()  # not grey


@pytest.mark.parametrize(("argv", "expected"), [
    (["--out", "grid.jpg"], "--out grid.jpg: expected a file name ending in .png"),
    (["--out", "grid.png", "--count", "0"], "--count: expected 1 to 256, got 0"),
    (["--out", "grid.png", "--dataset", "nope"], "nope"),
    (["--out", "grid.png", "--shift", "-1"], "--shift"),
])
def test_bad_options_are_one_line_and_status_2(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not list(tmp_path.iterdir())


def test_count_is_checked_in_python_too(digits):
    with pytest.raises(show.ConfigError, match="count: expected an integer from 1 to 256"):
        show.augmented_batch(digits, count=1000)
