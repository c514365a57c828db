"""Presets fill in settings; explicit flags win."""

import pytest

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.core.presets import PRESETS, config_from_preset


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
    with pytest.raises(ConfigError, match="^preset 'turbo': unknown.*tutorial"):
        config_from_preset("turbo", {})


def test_best_preset_changes_for_fashion_mnist_and_flags_still_win():
    digits = config_from_preset("best", {})
    clothes = config_from_preset("best", {"dataset": "fashion_mnist"})
    assert digits.dataset == "mnist" and not digits.hflip and digits.rotate > 0
    assert clothes.dataset == "fashion_mnist" and clothes.hflip and clothes.rotate == 0
    assert clothes.model != digits.model
    assert clothes.label_smoothing == digits.label_smoothing  # shared settings stay
    mine = config_from_preset("best", {"dataset": "fashion_mnist", "hflip": False,
                                       "model": "8C3-D10"})
    assert not mine.hflip and mine.model == "8C3-D10"


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx512f {flags}\n")
    return path


def test_fast_preset_computes_in_bfloat16_only_where_the_cpu_has_it(tmp_path):
    native = _cpuinfo(tmp_path, "amx_bf16 amx_tile")
    assert config_from_preset("fast", {}, cpuinfo=native).precision == "mixed_bfloat16"
    assert config_from_preset("fast", {}, cpuinfo=_cpuinfo(tmp_path, "avx2")).precision == \
        "float32"
    assert config_from_preset("fast", {"precision": "float32"}, cpuinfo=native).precision == \
        "float32"
    assert config_from_preset("best", {}, cpuinfo=native).precision == "float32"


def test_fast_preset_uses_its_adam_betas_and_tests_at_the_end():
    from tfcnn.core.presets import adam_betas, tests_every_epoch
    from tfcnn.training.run import make_optimizer

    fast = config_from_preset("fast", {})
    assert adam_betas(fast) == (0.7, 0.9) and not tests_every_epoch(fast)
    optimizer = make_optimizer(fast, steps_per_epoch=10)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.7, 0.9)
    plain = make_optimizer(TrainConfig(), steps_per_epoch=10)
    assert (plain.beta_1, plain.beta_2) == (0.9, 0.999)
    assert tests_every_epoch(TrainConfig()) and tests_every_epoch(config_from_preset("best", {}))
