"""Train flags for every command that trains: one flag per `TrainConfig` setting.

Each field of the `TrainConfig` schema (core/config.py, core/settings.py) has one flag of
its name (`--batch-size` sets `batch_size`), with the field's help text and CLI group;
flags left out are None, so that a preset's value or the config default applies.
`tfcnn train`, `lr-find` and `tune` share them through `add_train_flags` and turn the
parsed flags into a config with `config_from_args`. No parser takes abbreviations
(`--epoch` is not `--epochs`); `unknown_flags_message` suggests the flag meant.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.core.settings import GROUPS, Setting
from tfcnn.core.spelling import flag

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_TYPES = {"int": int, "float": float}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching; `add_subparsers` makes its commands of
    this class too, so every command refuses `--epoch` for `--epochs`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _help_text(text: str, default: Any) -> str:
    shown = format(default, "g") if isinstance(default, float) else str(default)
    return text.replace("{default}", shown).replace("%", "%%")  # argparse formats help


def _add_flag(container: Any, name: str, setting: Setting) -> None:
    """The flag (or exclusive flags) that set the field `name` on `container`."""
    if setting.kind == "bool":
        switches = setting.switches or ((flag(name), True, setting.help),)
        target = container.add_mutually_exclusive_group() if len(switches) > 1 else container
        for option, value, text in switches:
            target.add_argument(option, dest=name, action="store_const", const=value,
                                help=_help_text(text, _DEFAULTS[name]))
        return
    options: dict[str, Any] = {"dest": name, "metavar": setting.metavar,
                               "help": _help_text(setting.help, _DEFAULTS[name])}
    if setting.kind == "choice":
        options["choices"] = setting.choices
    elif setting.kind in _TYPES:
        options["type"] = _TYPES[setting.kind]
    container.add_argument(flag(name), **options)


def add_train_flags(parser: argparse.ArgumentParser,
                    groups: Iterable[str] | None = None) -> None:
    """Add to `parser` a flag for each `TrainConfig` setting in `groups` (keys of
    `core.settings.GROUPS`: "recipe", "data", "model", "training", "speed", "output",
    "augmentation", "transfer", "folders"; None: all), each in its titled argument group
    where it has one. Every flag defaults to None (not given); the parsed namespace has an
    attribute named after each field added."""
    wanted = list(GROUPS) if groups is None else list(groups)
    if unknown := [g for g in wanted if g not in GROUPS]:
        raise ValueError(f"unknown settings group(s) {unknown}; expected {list(GROUPS)}")
    containers = {group: parser if GROUPS[group] is None else
                  parser.add_argument_group(GROUPS[group])
                  for group in GROUPS if group in wanted}
    for group, container in containers.items():  # --help lists them group by group
        for name, setting in SETTINGS.items():
            if setting.group == group:
                _add_flag(container, name, setting)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The train flags given on the command line, as `TrainConfig` settings (unset flags
    are None and left out)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, resume: str | None = None) -> TrainConfig:
    """The `TrainConfig` the parsed train flags ask for (a preset applied, the run's own
    config when resuming); flags not given are left to the preset or the default."""
    from tfcnn.api.training import training_config

    return training_config(given_settings(args), resume, name=flag)


def unknown_flags_message(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" line, with "did you mean --epochs?" for the
    first unknown flag close to one of `parser`'s own."""
    message = f"unrecognized arguments: {' '.join(unknown)}"
    # argparse has no public list of a parser's options; _actions is what its help reads.
    known = {option[2:] for action in parser._actions for option in action.option_strings
             if option.startswith("--")}
    for token in unknown:
        if token.startswith("--"):
            # Compared without the dashes, which every flag shares (--bogus is not --json).
            close = difflib.get_close_matches(token[2:].split("=", 1)[0], sorted(known), n=1)
            if close:
                return f"{message} (did you mean --{close[0]}?)"
    return message
