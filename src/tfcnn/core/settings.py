"""The settings schema: what a `TrainConfig` field accepts, its help text and its CLI group.

Each field is declared once, in core/config.py, with one of the helpers here (`integer`,
`number`, `fraction`, `duration`, `choice`, `switch`, `text`), which put a `Setting` in the
dataclass field's metadata. That one declaration drives `validate` (one loop, one message
shape: `lr: expected a positive number, got -1`), the `tfcnn train` flags
(`cli_parser.add_train_flags`) and the spelling of settings in messages (core/spelling.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfcnn.core.errors import ConfigError

KINDS = ("int", "float", "bool", "str", "choice", "duration")

# The CLI groups, in the order `tfcnn train --help` shows them, with their titles there
# (None: among the command's own options). A command can add only some of them
# (`add_train_flags(parser, groups=("data", "folders", "augmentation"))`).
GROUPS: dict[str, str | None] = {
    "recipe": None,          # preset
    "data": None,            # which images, how many, which are held out
    "model": None,           # the network
    "training": None,        # optimizer, schedule, loss, seed, shuffling
    "speed": None,           # settings that change only how fast the same maths runs
    "output": None,          # where the run goes
    "augmentation": "augmentation (random, in the training graph, seeded)",
    "transfer": "transfer learning (--model keras:NAME)",
    "folders": "image-folder datasets (--dataset folder:PATH)",
}


class SettingError(ConfigError):
    """A setting's value refused: the message names the setting in `template`'s
    "{setting}" place, as a keyword by default; `spelled_as` re-spells it (core/spelling.py:
    the CLI's flags)."""

    def __init__(self, setting: str, template: str) -> None:
        self.setting, self.template = setting, template
        super().__init__(self.spelled_as(str))  # the keyword itself

    def spelled_as(self, name: Callable[[str], str]) -> str:
        return self.template.replace("{setting}", name(self.setting))


_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool,
                                              "str": str, "choice": str,
                                              "duration": (int, float)}


@dataclass(frozen=True)
class Setting:
    """One setting's rules and its CLI face.

    `expected` is what an error says was expected ("a positive integer"); the bounds are
    inclusive (`minimum`, `maximum`) or exclusive (`above`, `below`); `optional`: None is
    allowed (the field's default is None); `help` may hold `{default}`; `switches`: for a
    bool, the flags that set it, as (flag, value, help), mutually exclusive when several
    (empty: one flag named after the field that sets True).
    """

    kind: str
    help: str
    group: str
    expected: str
    optional: bool = False
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    allow_empty: bool = True
    metavar: str | None = None
    switches: tuple[tuple[str, Any, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"setting kind {self.kind!r}: expected one of {KINDS}")
        if self.group not in GROUPS:
            raise ValueError(f"setting group {self.group!r}: expected one of {tuple(GROUPS)}")
        if not self.help:
            raise ValueError("a setting needs its help text")

    def accepts(self, value: Any) -> bool:
        """Whether `value` is of this setting's kind and within its range or choices."""
        if value is None:
            return self.optional
        if isinstance(value, bool) != (self.kind == "bool"):
            return False  # True is an int to Python, not a number of epochs to anyone
        if not isinstance(value, _TYPES[self.kind]):
            return False
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "str":
            return self.allow_empty or bool(value)
        if self.kind in ("float", "duration") and not math.isfinite(value):
            return False
        return self._in_range(value)

    def _in_range(self, value: Any) -> bool:
        return ((self.minimum is None or value >= self.minimum)
                and (self.above is None or value > self.above)
                and (self.maximum is None or value <= self.maximum)
                and (self.below is None or value < self.below))


def _describe_range(kind: str, minimum: float | None, above: float | None,
                    maximum: float | None, below: float | None) -> str:
    """What a number must be, in words: "a positive integer", "a number from 0 to 1"."""
    noun = "an integer" if kind == "int" else "a number"
    upper = maximum if maximum is not None else below
    if minimum is None and above is None and upper is None:
        return noun
    if upper is None:
        if (kind == "int" and minimum == 1) or above == 0:
            return f"a positive {noun.split()[-1]}"
        return f"{noun} >= {minimum:g}" if minimum is not None else f"{noun} > {above:g}"
    to = f"to {'below ' if below is not None else ''}{upper:g}"
    if minimum is not None:
        return f"{noun} from {minimum:g} {to}"
    return f"{noun} above {above:g} and {to}"


def _field(default: Any, setting: Setting) -> Any:
    return dataclasses.field(default=default, metadata={"setting": setting})


def integer(default: int | None, help: str, *, group: str, minimum: int = 1,
            expected: str | None = None, metavar: str | None = None) -> Any:
    """An integer field (never a bool), at least `minimum`; None allowed when the default is."""
    words = expected or _describe_range("int", minimum, None, None, None)
    return _field(default, Setting("int", help, group, words, default is None,
                                   minimum=minimum, metavar=metavar))


def number(default: float | None, help: str, *, group: str, minimum: float | None = None,
           above: float | None = None, maximum: float | None = None,
           below: float | None = None, expected: str | None = None,
           metavar: str | None = None) -> Any:
    """A finite int or float field within the bounds given."""
    words = expected or _describe_range("float", minimum, above, maximum, below)
    return _field(default, Setting("float", help, group, words, default is None,
                                   minimum=minimum, above=above, maximum=maximum, below=below,
                                   metavar=metavar))


def fraction(default: float | None, help: str, *, group: str, expected: str | None = None,
             metavar: str | None = "F") -> Any:
    """A number from 0 to below 1."""
    return number(default, help, group=group, minimum=0, below=1, metavar=metavar,
                  expected=expected or "a fraction from 0 to below 1")


def duration(default: float | None, help: str, *, group: str,
             metavar: str | None = "DURATION") -> Any:
    """Seconds (> 0), given as a number or as text such as "90s", "15m", "1h" or "1m30s"
    (`normalise` turns the text into seconds before `validate`)."""
    return _field(default, Setting("duration", help, group, "a duration such as 90s, 15m or "
                                   "1h", default is None, above=0, metavar=metavar))


def choice(default: str | None, choices: tuple[str, ...], help: str, *, group: str,
           metavar: str | None = None) -> Any:
    """One of `choices` (a CLI flag with argparse's choices)."""
    return _field(default, Setting("choice", help, group, f"one of {', '.join(choices)}"
                                   if len(choices) > 1 else choices[0], default is None,
                                   choices=choices, metavar=metavar))


def switch(default: bool, help: str, *, group: str,
           switches: tuple[tuple[str, Any, str], ...] = ()) -> Any:
    """A bool field, set on the CLI by a store_const flag (or by one of several exclusive
    ones, `switches`); without the flag the parsed value is None (the default applies)."""
    return _field(default, Setting("bool", help, group, "True or False", switches=switches))


def text(default: str | None, help: str, *, group: str, expected: str = "a string",
         allow_empty: bool = True, metavar: str | None = None) -> Any:
    """A string field (a name, a path or notation); checked further where it is used."""
    return _field(default, Setting("str", help, group, expected, default is None,
                                   allow_empty=allow_empty, metavar=metavar))


def settings_of(cls: type) -> dict[str, Setting]:
    """Each field of the dataclass `cls` and its `Setting`; every field must have one."""
    found = {}
    for f in dataclasses.fields(cls):
        if not isinstance(f.metadata.get("setting"), Setting):
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with core/settings.py's "
                            "integer(), number(), choice(), ... so it is validated and gets "
                            "its flag")
        found[f.name] = f.metadata["setting"]
    return found


def normalise(obj: Any, schema: dict[str, Setting]) -> None:
    """Turn the text of duration settings ("90s") into seconds, in place on the frozen `obj`;
    text that is not a duration is a `SettingError`."""
    from tfcnn.core.durations import parse_duration

    for name, setting in schema.items():
        value = getattr(obj, name)
        if setting.kind != "duration" or not isinstance(value, str):
            continue
        try:
            seconds = parse_duration(value, "{setting}")
        except ConfigError:
            raise SettingError(name, f"{{setting}}: expected {setting.expected}, "
                                     f"got {value!r}") from None
        object.__setattr__(obj, name, seconds)


def validate(obj: Any, schema: dict[str, Setting]) -> None:
    """Raise `SettingError` naming the first attribute of `obj` its `Setting` refuses."""
    for name, setting in schema.items():
        value = getattr(obj, name)
        if not setting.accepts(value):
            raise SettingError(name, f"{{setting}}: expected {setting.expected}, got {value!r}")
