"""TrainConfig: defaults, the settings schema's validation, spelling and the JSON round trip."""

import dataclasses
import json

import pytest

from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.settings import Setting, SettingError, settings_of, text
from tfcnn.core.spelling import flag, keyword, respell, spelled


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
    ("zoom", 1.0, "^zoom: expected a fraction from 0 to below 1"),
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


# The schema (core/settings.py): every field is declared with its kind, and one loop checks
# them all. A bad value of each field's kind is refused with the field's name.


def _refused_values(setting: Setting) -> list:
    """Values a setting of this kind must refuse: the wrong type, and just outside its range."""
    wrong_type = {"int": ["3", 2.5, True], "float": ["0.1", True, float("nan"), float("inf")],
                  "bool": [1, "yes"], "str": [5], "choice": ["bogus", 1],
                  "duration": ["soon", "15 minutes", True, float("nan")]}[setting.kind]
    out_of_range = [bound for bound in (setting.above, setting.maximum, setting.below)
                    if bound is not None and not setting.accepts(bound)]
    out_of_range += [setting.minimum - 1] if setting.minimum is not None else []
    out_of_range += [bound + 1 for bound in (setting.maximum,) if bound is not None]
    empty = [] if setting.allow_empty or setting.kind != "str" else [""]
    return [*wrong_type, *out_of_range, *empty, *([] if setting.optional else [None])]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_schema_refuses_a_bad_value_of_each_fields_kind_naming_the_field(name):
    setting = SETTINGS[name]
    values = _refused_values(setting)
    assert values, name
    for value in values:
        with pytest.raises(ConfigError) as caught:
            TrainConfig(**{name: value})
        assert str(caught.value) == f"{name}: expected {setting.expected}, got {value!r}"


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_schema_accepts_its_defaults_and_bounds(name):
    setting = SETTINGS[name]
    needs = {"early_stop": {"val_split": 0.1}}.get(name, {})  # cross-checked settings
    for value in (setting.minimum, setting.maximum, *setting.choices):
        if value is not None:
            expected = "stream" if (name, value) == ("cache", "none") else value  # old name
            assert getattr(TrainConfig(**{name: value}, **needs), name) == expected


def test_a_field_declared_without_a_setting_is_refused_by_the_schema():
    @dataclasses.dataclass(frozen=True)
    class Partly:
        declared: str = text("x", "a declared setting", group="data")
        forgotten: int = 3

    with pytest.raises(TypeError, match="Partly.forgotten: declare it with"):
        settings_of(Partly)


def test_a_bad_value_in_config_json_names_the_file_and_the_key():
    with pytest.raises(ConfigError, match=r"^run/config.json: epochs: expected a positive "
                                          r"integer, got 0$"):
        TrainConfig.from_dict({"epochs": 0}, source="run/config.json")


def test_setting_errors_name_the_keyword_and_the_cli_spells_the_flag():
    with pytest.raises(SettingError, match="^batch_size: expected"):
        TrainConfig(batch_size=0)
    with pytest.raises(SettingError, match="^--batch-size: expected a positive integer, got 0$"),\
            spelled(flag):
        TrainConfig(batch_size=0)
    with pytest.raises(SettingError, match="^weights: expected none for model"), \
            spelled(keyword):
        TrainConfig(weights="imagenet")


def test_flags_written_by_lower_layers_are_respelled_as_keywords():
    message = ("--image-size, --rgb: only for image-folder datasets (--dataset folder:PATH); "
               "--ensemble stays; continue with: tfcnn train --resume run --cache stream")
    assert respell(message, keyword) == (
        "image_size, grayscale: only for image-folder datasets (dataset folder:PATH); "
        "--ensemble stays; continue with: tfcnn train --resume run --cache stream")
    assert respell(message, flag) == message
    with pytest.raises(ConfigError, match=r"^model 'x': try image_size 32$"), \
            spelled(keyword):
        raise ConfigError("--model 'x': try --image-size 32")
    with pytest.raises(RunDirError, match=r"\(use resume r to continue it, or another out\)$"), \
            spelled(keyword):
        raise RunDirError("r: a run (use --resume r to continue it, or another --out)")


@pytest.mark.parametrize(("given", "seconds"), [
    ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("1m30s", 90.0), (45, 45.0), ("none", None),
    (None, None),
])
def test_a_time_budget_is_read_as_seconds(given, seconds):
    config = TrainConfig(time_budget=given)
    assert config.time_budget == seconds
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("given", ["15 minutes", "-5s", "1.5.2m", True])
def test_a_time_budget_that_is_no_duration_is_a_one_line_error(given):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(time_budget=given)
    assert "expected a duration such as 90s" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_a_bad_budget_and_early_stop_without_validation(capsys):
    from tfcnn.cli import main

    assert main(["train", "--time-budget", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--time-budget: expected a duration such as 90s, 15m or 1h, got 'soon'" in err
    assert main(["train", "--early-stop", "3"]) == 2
    assert "--early-stop: needs a validation split to watch" in capsys.readouterr().err
