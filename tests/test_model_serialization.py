"""One serialization test for every kind of tfcnn model (the keras-hub manner): saved, loaded
by the one loader, it answers the same and carries its preprocessing and calibration; a
model saved before models carried a preprocessor still loads, with the equivalent one."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from support import probabilities

DIGITS = tuple("0123456789")
KINDS = {
    "notation": ("8C3-P2-BN-DO20-D10", (28, 28, 1), "mnist"),
    "mirror": ("8M3-BN-8M3-P2-D10", (28, 28, 1), None),
    "residual": ("8C3-R8-R16S2-GAP-D10", (24, 24, 3), None),
    "backbone": ("keras:MobileNetV3Small", (32, 32, 3), None),
}


def _build(kind: str):
    from tfcnn.models.backbones import build_backbone_model
    from tfcnn.models.network import build_model

    notation, shape, prepare = KINDS[kind]
    if kind == "backbone":
        return build_backbone_model(notation, shape, DIGITS, seed=3, prepare=prepare)
    return build_model(notation, shape, DIGITS, seed=3, prepare=prepare, dataset="d")


def _rewrite_config(path: Path, change) -> None:
    """Edit a .keras file's config.json in place (as an older tfcnn would have written it)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config["config"])
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_model_kind_round_trips_with_its_preprocessing_and_calibration(kind, tmp_path):
    from tfcnn.models.calibration import Calibration
    from tfcnn.models.trained import TrainedModel

    model = _build(kind)
    model.calibration = Calibration(temperature=1.7)
    model.save(tmp_path / "m.keras")
    loaded = TrainedModel.load(tmp_path / "m.keras")
    assert loaded.image_shape == KINDS[kind][1] and loaded.class_names == list(DIGITS)
    assert loaded.prepare == KINDS[kind][2]
    assert loaded.preprocessor.get_config()["image_shape"] == list(KINDS[kind][1])
    assert loaded.calibration.temperature == 1.7
    pixels = np.random.default_rng(0).integers(0, 256, (5, *KINDS[kind][1]), np.uint8)
    x = pixels.astype(np.float32) / 255
    # The calibrated answer: softmax(logits / T), from the saved model as from the original.
    logits = np.asarray(model(x, training=False), np.float64)
    expected = np.exp(logits / 1.7) / np.exp(logits / 1.7).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.predict_proba(pixels), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.predict_proba(pixels, calibrated=False),
                               np.asarray(probabilities(model, x)), atol=1e-5)


def test_a_model_saved_before_preprocessors_loads_with_the_equivalent_one(tmp_path):
    from tfcnn.models.trained import TrainedModel

    model = _build("notation")
    for tag, step in (("mnist", "mnist"), ("scale", None)):
        path = tmp_path / f"{tag}.keras"
        model.save(path)

        def old_style(config, tag=tag):
            del config["preprocessor"], config["calibration"]
            config["preprocessing"] = tag

        _rewrite_config(path, old_style)
        loaded = TrainedModel.load(path)
        assert loaded.prepare == step and loaded.calibration.temperature == 1.0
        x = np.random.default_rng(1).random((3, 28, 28, 1)).astype(np.float32)
        np.testing.assert_allclose(loaded.predict_proba(x),
                                   np.asarray(probabilities(model, x)), atol=1e-5)


def test_an_unknown_old_tag_and_a_random_file_are_one_line_errors(tmp_path):
    from tfcnn.core.errors import RunDirError
    from tfcnn.models.trained import TrainedModel

    path = tmp_path / "odd.keras"
    _build("notation").save(path)

    def odd(config):
        del config["preprocessor"]
        config["preprocessing"] = "zca"

    _rewrite_config(path, odd)
    with pytest.raises(RunDirError, match="odd.keras: cannot be loaded .*unknown preprocessing"):
        TrainedModel.load(path)
    (tmp_path / "random.keras").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(RunDirError, match="random.keras: not a Keras model file"):
        TrainedModel.load(tmp_path / "random.keras")


def test_predict_proba_takes_any_size_and_channels_and_refuses_bad_batches():
    from tfcnn.core.errors import ImageError
    from tfcnn.models.trained import TrainedModel

    model = TrainedModel(_build("notation"))
    assert model.predict_proba(np.zeros((0, 28, 28, 1), np.uint8)).shape == (0, 10)
    assert model.predict_proba(np.zeros((2, 56, 40, 3), np.uint8)).shape == (2, 10)
    assert model.predict_proba(np.zeros((2, 28, 28), np.uint8)).shape == (2, 10)
    for bad, expected in [(np.zeros((2, 28, 28, 5)), "C = 1 to 4"),
                          (np.full((1, 28, 28, 1), 2.0), "outside \\[0, 1\\]"),
                          (np.full((1, 28, 28, 1), np.nan), "NaN"),
                          (np.zeros((1, 28, 28, 1), np.int64), "dtype int64"),
                          (np.zeros((1, 0, 28, 1), np.uint8), "empty images")]:
        with pytest.raises(ImageError, match=expected):
            model.predict_proba(bad)
