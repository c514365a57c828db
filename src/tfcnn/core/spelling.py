"""How messages name a setting: `batch_size` to a Python user, `--batch-size` on the CLI.

Functions that raise about settings take a `Spelling` (`keyword`, the default, or the CLI's
`flag`). `spelled(name)` spells the errors raised inside it: a `SettingError` (TrainConfig's
checks, presets) names its setting as `name` says; lower layers that were written for the
command line still write some settings as flags (`--image-size 'x': ...`), which it
rewrites the same way, so the API never shows a Python user a CLI flag.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tfcnn.core.config import SETTINGS
from tfcnn.core.errors import ConfigError, DatasetError, ModelSpecError, RunDirError
from tfcnn.core.settings import SettingError

Spelling = Callable[[str], str]

# Settings that are keywords of the API but not TrainConfig fields.
API_KEYWORDS = ("resume",)

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# A command line quoted in a message ("continue with: tfcnn train --resume RUN") keeps
# its flags: it is what the user would type.
_COMMAND = re.compile(r"\btfcnn [a-z][a-z-]* ")
# The errors that name settings (TrainingInterrupted's hint is a command line to type).
RESPELLED = (ConfigError, DatasetError, ModelSpecError, RunDirError)


def keyword(name: str) -> str:
    """A setting as the API's keyword argument (and config.json key): `batch_size`."""
    return name


def flag(name: str) -> str:
    """A setting as `tfcnn train`'s flag: `--batch-size`."""
    return "--" + name.replace("_", "-")


def _setting_of_flag() -> dict[str, str]:
    """Every flag of a setting, CLI-only alternatives (`--rgb`) included, and its setting."""
    names = {flag(name): name for name in (*SETTINGS, *API_KEYWORDS)}
    for name, setting in SETTINGS.items():
        names.update({option: name for option, _, _ in setting.switches})
    return names


_SETTING_OF_FLAG = _setting_of_flag()


def respell(message: str, name: Spelling) -> str:
    """`message` with each setting written as a flag spelled by `name` instead (flags
    that name no setting, and flags inside a quoted `tfcnn COMMAND ...` line, stay)."""
    command = _COMMAND.search(message)
    head, tail = (message[:command.start()], message[command.start():]) if command else \
        (message, "")

    def spell(match: re.Match[str]) -> str:
        setting = _SETTING_OF_FLAG.get(match.group(0))
        if setting is None or name(setting) == flag(setting):
            return match.group(0)
        return name(setting)

    return _FLAG.sub(spell, head) + tail


@contextmanager
def spelled(name: Spelling) -> Iterator[None]:
    """Settings errors raised inside name their settings as `name` spells them (the same
    exception, its message rewritten)."""
    try:
        yield
    except SettingError as exc:
        exc.args = (exc.spelled_as(name),)
        raise
    except RESPELLED as exc:
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (respell(exc.args[0], name),)
        raise


# Who is asking: the API (keywords, the default) or the CLI, which sets `flag` for the
# command it runs (`speaking`), so library entry points spell settings for their caller.
_CALLER: contextvars.ContextVar[Spelling] = contextvars.ContextVar("spelling", default=keyword)


def caller() -> Spelling:
    """How the current caller spells settings: `keyword` (the API) or `flag` (the CLI)."""
    return _CALLER.get()


@contextmanager
def speaking(name: Spelling) -> Iterator[None]:
    """Within this block, `caller()` is `name` (the CLI wraps each command in it)."""
    token = _CALLER.set(name)
    try:
        yield
    finally:
        _CALLER.reset(token)


@contextmanager
def as_caller_spells() -> Iterator[None]:
    """`spelled(caller())`: errors inside name settings as whoever called spells them."""
    with spelled(caller()):
        yield
