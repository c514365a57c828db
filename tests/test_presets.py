"""Presets fill in settings; explicit flags win."""

import pytest

from tfcnn.config import TrainConfig
from tfcnn.errors import ConfigError
from tfcnn.presets import PRESETS, config_from_preset


def test_no_preset_is_the_plain_config():
    assert config_from_preset(None, {"epochs": 2}) == TrainConfig(epochs=2)


def test_tutorial_preset_is_the_defaults():
    assert config_from_preset("tutorial", {}) == TrainConfig(preset="tutorial")


def test_given_settings_override_the_preset():
    for name, settings in PRESETS.items():
        config = config_from_preset(name, {"epochs": 7})
        assert config.epochs == 7 and config.preset == name
        for field, value in settings.items():
            if field != "epochs":
                assert getattr(config, field) == value


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="--preset 'turbo': unknown.*tutorial"):
        config_from_preset("turbo", {})
