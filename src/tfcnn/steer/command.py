"""Settings written back as a `tfcnn train ...` command line a user can copy.

`train_command(settings)` spells the given settings as train flags (the ones a user gave
to `lr-find`, say). `reproducing_command(config)` finds the flags that rebuild a run's
whole `TrainConfig` exactly: the settings that differ from the defaults, plus those a
preset would otherwise change (its time budget, its bfloat16 precision), checked by
building the config back from them. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.core.spelling import flag

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
# Never part of a reproducing command: where the run goes is the user's choice.
_NOT_REPRODUCED = ("out",)


def flag_words(name: str, value: Any) -> list[str]:
    """The command-line words that set `name` to `value` (`["--lr", "0.003"]`,
    `["--hflip"]`, `["--rgb"]`)."""
    setting = SETTINGS[name]
    if setting.kind == "bool":
        for option, switched, _ in setting.switches or ((flag(name), True, ""),):
            if switched == value:
                return [option]
        raise ValueError(f"{name}={value!r}: no flag sets it")
    if value is None:
        raise ValueError(f"{name}=None: no flag sets it")
    text = repr(value) if isinstance(value, float) else str(value)
    return [flag(name), text]


def train_command(settings: Mapping[str, Any], extra: Iterable[str] = ()) -> str:
    """`tfcnn train` with a flag for each setting given (None: left out), in the order of
    `TrainConfig`'s fields, then the words `extra`; quoted for a POSIX shell."""
    words = ["tfcnn", "train"]
    for name in SETTINGS:
        if name in settings and settings[name] is not None:
            words += flag_words(name, settings[name])
    return " ".join(shlex.quote(word) for word in [*words, *extra])


def _differing(config: TrainConfig, built: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in SETTINGS
            if name not in _NOT_REPRODUCED and getattr(config, name) != getattr(built, name)}


def changed_settings(config: TrainConfig) -> dict[str, Any]:
    """`config`'s settings that differ from the defaults (its `out` left out)."""
    return _differing(config, TrainConfig())


def reproducing_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings whose flags rebuild `config` (all but its `out`): a `ValueError` when
    some setting cannot be written as a flag."""
    from tfcnn.api.training import training_config

    given = changed_settings(config)
    given["epochs"] = config.epochs  # always said: a budget's plan is recorded as epochs
    for _ in range(3):  # a preset's recipe may set what the defaults did not
        missing = _differing(config, training_config(dict(given)))
        if not missing:
            return given
        # A preset's budget is turned off by the word "none" (None would leave it on).
        given.update({name: "none" if value is None and SETTINGS[name].kind == "duration"
                      else value for name, value in missing.items()})
    raise ValueError(f"settings {sorted(missing)} cannot be reproduced with flags")


def reproducing_command(config: TrainConfig) -> str:
    """The `tfcnn train ...` command that trains `config` again (same seed, same epochs)."""
    return train_command(reproducing_settings(config))
