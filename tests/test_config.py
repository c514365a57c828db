"""TrainConfig: defaults, validation and the JSON round trip."""

import json

import pytest

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError


def test_defaults_are_the_tutorial():
    c = TrainConfig()
    assert (c.dataset, c.model, c.epochs, c.batch_size, c.lr) == ("mnist", "tutorial", 5, 32, 0.001)
    assert c.shuffle_buffer is None  # a quarter of the training set, decided with the data


def test_round_trip_through_json():
    c = TrainConfig(epochs=3, seed=7, lr=0.01, limit_train=100)
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize("changes", [
    {"epochs": 0}, {"batch_size": -1}, {"lr": 0.0}, {"seed": -3}, {"shuffle_buffer": 0},
    {"limit_train": 0}, {"eval_batch_size": 2.5}, {"epochs": True},
])
def test_out_of_range_settings_name_the_field(changes):
    field = next(iter(changes))
    with pytest.raises(ConfigError, match=f"^{field}: expected"):
        TrainConfig(**changes)


def test_unknown_keys_are_rejected_with_the_source():
    with pytest.raises(ConfigError, match="run/config.json: unknown setting.*bogus"):
        TrainConfig.from_dict({"bogus": 1}, source="run/config.json")


def test_schedule_and_warmup_are_validated():
    with pytest.raises(ConfigError, match="^schedule: expected one of constant, onecycle, cosine"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="^warmup: expected a fraction"):
        TrainConfig(schedule="onecycle", warmup=1.5)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("weight_decay", -0.1, "^weight_decay: expected a number >= 0"),
    ("shift", -1, "^shift: expected a number >= 0"),
    ("rotate", "10", "^rotate: expected a number >= 0"),
    ("zoom", 1.0, "^zoom: expected a fraction below 1"),
    ("label_smoothing", 1.0, "^label_smoothing: expected a fraction from 0 to below 1"),
    ("erase", 1.5, "^erase: expected a probability from 0 to 1"),
    ("elastic", -34, "^elastic: expected a number >= 0"),
    ("elastic_sigma", 0, "^elastic_sigma: expected a number > 0"),
    ("ema", 1.0, "^ema: expected a momentum from 0 to below 1"),
    ("ema", -0.5, "^ema: expected a momentum from 0 to below 1"),
])
def test_regularisation_and_augmentation_settings_are_validated(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_precision_is_validated():
    assert TrainConfig(precision="mixed_bfloat16").precision == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="^precision: expected one of float32, mixed_bfloat16"):
        TrainConfig(precision="float16")


@pytest.mark.parametrize(("changes", "field"), [
    ({"weights": ""}, "weights"),
    ({"weights": "imagenet"}, "weights"),  # only for keras:NAME models
    ({"freeze_epochs": -1}, "freeze_epochs"), ({"freeze_epochs": 1.5}, "freeze_epochs"),
    ({"fine_tune_lr": 0.0}, "fine_tune_lr"), ({"fine_tune_lr": True}, "fine_tune_lr"),
    ({"fine_tune_layers": -2}, "fine_tune_layers"),
    ({"crop_area": 1.0}, "crop_area"), ({"crop_area": -0.1}, "crop_area"),
    ({"brightness": 1.5}, "brightness"), ({"contrast": -0.2}, "contrast"),
    ({"saturation": "x"}, "saturation"), ({"hue": 0.6}, "hue"),
    ({"mixup": -1.0}, "mixup"), ({"cutmix": False}, "cutmix"),
    ({"class_weight": "auto"}, "class_weight"),
])
def test_photo_and_transfer_settings_are_validated(changes, field):
    with pytest.raises(ConfigError, match=f"^{field}: expected") as caught:
        TrainConfig(**changes)
    assert "\n" not in str(caught.value)


def test_photo_and_transfer_settings_accept_sensible_values_and_round_trip():
    c = TrainConfig(model="keras:MobileNetV3Small", weights="imagenet", freeze_epochs=2,
                    fine_tune_lr=1e-4, fine_tune_layers=20, crop_area=0.35, brightness=0.2,
                    contrast=0.2, saturation=0.3, hue=0.05, mixup=0.2, cutmix=1.0,
                    class_weight="balanced")
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    defaults = TrainConfig()
    assert (defaults.weights, defaults.freeze_epochs, defaults.crop_area, defaults.mixup,
            defaults.class_weight) == ("none", 0, 0.0, 0.0, None)
