"""What the API takes, and the silent wrong answers the round-3 probe found (issue 25 item 5):
each input either gives the right number of answers or one clear `TfcnnError`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import tfcnn
from support import draw_digit

DIGITS = tuple("0123456789")


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("api-inputs") / "m.keras"
    build_model("4C3-P2-D10", (28, 28, 1), DIGITS, seed=0, prepare="mnist").save(path)
    return tfcnn.load(path)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("api-inputs-rgb") / "m.keras"
    build_model("4C3-P2-D3", (48, 48, 3), ("a", "b", "c"), seed=0).save(path)
    return tfcnn.load(path)


def test_a_two_channel_array_is_one_grey_and_alpha_image_not_48_images(rgb):
    answers = rgb.predict(np.zeros((48, 48, 2), np.uint8))
    assert len(answers) == 1
    # Grey and alpha: transparent pixels are white, as a PNG with alpha is read.
    white = rgb.probabilities(np.full((48, 48, 3), 255, np.uint8))
    np.testing.assert_allclose(rgb.probabilities(np.zeros((48, 48, 2), np.uint8)), white,
                               atol=1e-6)


def test_an_empty_batch_gives_no_answers(clf):
    assert clf.predict(np.zeros((0, 28, 28, 1), np.uint8)) == []
    assert clf.probabilities(np.zeros((0, 28, 28, 1), np.uint8)).shape == (0, 10)
    assert clf.predict_proba(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 10)


def test_a_pillow_image_without_pixels_is_one_error(clf):
    with pytest.raises(tfcnn.ImageError, match=r"image\[0\]: cannot convert image .*no pixels"):
        clf.predict(Image.new("L", (0, 0)))
    with pytest.raises(tfcnn.ImageError, match="no pixels"):
        clf.predict(Image.new("RGB", (5, 0)), preprocess=False)


@pytest.mark.parametrize("target", [1.5, True, object(), [1, 2]])
def test_explain_refuses_targets_that_are_not_a_class(clf, target):
    with pytest.raises(tfcnn.TfcnnError, match="target"):
        clf.explain(np.zeros((28, 28), np.uint8), target=target)


def test_explain_takes_a_class_by_index_or_name(clf):
    explained = clf.explain(np.zeros((28, 28), np.uint8), target="3")
    assert explained[0].target == 3
    assert clf.explain(np.zeros((28, 28), np.uint8), target=np.int64(4))[0].target == 4


def test_a_random_keras_file_is_named_for_what_it_is(tmp_path):
    junk = tmp_path / "random.keras"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(tfcnn.RunDirError, match="random.keras: not a Keras model file"):
        tfcnn.load(junk)


def test_predict_expands_a_folder_as_the_cli_does(clf, tmp_path):
    folder = tmp_path / "digits"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.jpg", "sub/c.png"):
        draw_digit(3).convert("RGB").save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    answers = clf.predict(str(folder))
    assert [p.source for p in answers] == [str(folder / n) for n in ("a.jpg", "b.png",
                                                                      "sub/c.png")]
    assert [p.source for p in clf.predict([folder, str(folder / "b.png")])][-1].endswith("b.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tfcnn.ImageError, match="empty: folder holds no"):
        clf.predict(tmp_path / "empty")
