"""tfcnn.evaluation.plots: each figure is a readable PNG of sensible size, written atomically;
bad input is refused with ValueError and leaves no file behind; no TensorFlow and no pyplot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tfcnn.evaluation.plots import plot_confusion_matrix, plot_training_curves, plot_worst_images

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _check_png(path, min_size=(400, 300), max_size=(3000, 3000)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1]
        # Not a blank canvas: a drawn figure has many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp file left"


def _cm(n=10, seed=0):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 5, (n, n))
    np.fill_diagonal(cm, rng.integers(900, 1100, n))
    return cm


def test_import_uses_neither_tensorflow_nor_pyplot():
    code = ("import sys, tfcnn.evaluation.plots\n"
            "bad = [m for m in ('tensorflow', 'keras', 'matplotlib.pyplot') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "import matplotlib\n"
            "print(matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("names", [DIGITS, FASHION, ["cat", "dog"]])
def test_confusion_matrix_png(tmp_path, names):
    path = plot_confusion_matrix(_cm(len(names)), names, tmp_path / "cm.png")
    assert path == tmp_path / "cm.png"
    _check_png(path)


def test_confusion_matrix_with_all_zero_off_diagonal(tmp_path):
    _check_png(plot_confusion_matrix(np.diag([5, 7, 9]), ["a", "b", "c"], tmp_path / "cm.png"))


def test_an_existing_file_is_replaced(tmp_path):
    target = tmp_path / "cm.png"
    target.write_bytes(b"old")
    plot_confusion_matrix(_cm(3), ["a", "b", "c"], target)
    _check_png(target)


@pytest.mark.parametrize(("cm", "names", "message"), [
    (np.zeros((3, 3), int), ["a", "b"], "does not match 2 class names"),
    (np.zeros(9, int), ["a"] * 9, "does not match"),
    (np.full((2, 2), 0.5), ["a", "b"], "integer counts"),
    (np.array([[1, -1], [0, 1]]), ["a", "b"], "non-negative"),
    (np.zeros((0, 0), int), [], "at least one class"),
])
def test_confusion_matrix_refuses_bad_input(tmp_path, cm, names, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(cm, names, tmp_path / "cm.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", [1, 7, 25])
def test_worst_images_grid(tmp_path, count):
    rng = np.random.default_rng(count)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    true, pred = rng.integers(0, 10, count), rng.integers(0, 10, count)
    path = plot_worst_images(images, true, pred, rng.random(count), FASHION,
                             tmp_path / "worst.png")
    _check_png(path, min_size=(200, 250))


def test_worst_images_accepts_float_images_with_a_channel_axis(tmp_path):
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    _check_png(plot_worst_images(images, [1, 2, 3, 4], [1, 0, 3, 9], [0.9, 0.8, 0.7, 0.6],
                                 DIGITS, tmp_path / "w.png"), min_size=(200, 250))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"images": np.zeros((0, 28, 28), np.uint8), "true": [], "pred": [], "confidence": []},
     "non-empty"),
    ({"images": np.zeros((2, 28), np.uint8)}, "non-empty stack"),
    ({"true": [1]}, "true: 1 values for 2 images"),
    ({"confidence": [0.5, 0.5, 0.5]}, "confidence: 3 values"),
    ({"pred": [1, 10]}, "pred: class index 10 is out of range"),
    ({"true": [-1, 0]}, "true: class index -1"),
])
def test_worst_images_refuses_bad_input(tmp_path, kwargs, message):
    args = {"images": np.zeros((2, 28, 28), np.uint8), "true": [0, 1], "pred": [1, 0],
            "confidence": [0.9, 0.8], **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_worst_images(**args, class_names=DIGITS, path=tmp_path / "w.png")
    assert list(tmp_path.iterdir()) == []


def _epochs(n):
    return [{"epoch": e, "loss": 0.3 / e, "accuracy": 0.9 + 0.01 * e, "test_loss": 0.1 / e,
             "test_accuracy": 0.95 + 0.005 * e, "seconds": 12.0} for e in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 5])
def test_training_curves_png(tmp_path, n):
    _check_png(plot_training_curves(_epochs(n), tmp_path / "curves.png"))


@pytest.mark.parametrize(("epochs", "message"), [
    ([], "no epoch records"),
    ([{"epoch": 1, "loss": 0.1, "accuracy": 0.9, "test_loss": 0.1}], "record 0: .*test_accuracy"),
    ([*_epochs(1), {**_epochs(2)[1], "loss": "0.1"}], "record 1: missing or non-numeric loss"),
])
def test_training_curves_refuse_bad_records(tmp_path, epochs, message):
    with pytest.raises(ValueError, match=message):
        plot_training_curves(epochs, tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []


def test_training_curves_without_test_figures(tmp_path):
    # A folder run with --test-split 0 records test_loss/test_accuracy as None.
    epochs = [{**r, "test_loss": None, "test_accuracy": None} for r in _epochs(3)]
    _check_png(plot_training_curves(epochs, tmp_path / "curves.png"))
