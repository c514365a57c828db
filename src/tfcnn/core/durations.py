"""Durations as users write them: `90s`, `15m`, `1h`, `1m30s`, or a number of seconds.

`--time-budget` of `tfcnn train`, `tune` and `audit` all read them here.
"""

from __future__ import annotations

import math
import re

from tfcnn.core.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smh]?)")


def parse_duration(text: str | float | int | None, name: str = "--time-budget"
                   ) -> float | None:
    """Seconds of `90s`, `5m`, `1h`, `1m30s` or a plain number of seconds; None for None,
    "none" or "0" (no budget). Anything else is a `ConfigError` naming `name`.

    >>> parse_duration("1m30s"), parse_duration(20), parse_duration("none")
    (90.0, 20.0, None)
    """
    if text is None:
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str):
        spec = text.strip().lower().replace(" ", "")
        if spec in ("none", "0", "0s"):
            return None
        seconds = _parse_parts(spec, text, name)
    else:
        raise ConfigError(f"{name} {text!r}: expected a duration such as 90s, 5m or 1h")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name} {text!r}: expected a duration such as 90s, 5m or 1h")
    return seconds or None


def _parse_parts(spec: str, text: object, name: str) -> float:
    parts = _PART.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec or \
            (len(parts) > 1 and not all(u for _, u in parts)):
        raise ConfigError(f"{name} {text!r}: expected a duration such as 90s, 5m, 1h or "
                          "1m30s (none: no limit)")
    return sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)


def describe_seconds(seconds: float) -> str:
    """`75.3` -> "75 s", `200` -> "3 min 20 s", `900` -> "15 min".

    >>> describe_seconds(75.3), describe_seconds(200), describe_seconds(900)
    ('75 s', '3 min 20 s', '15 min')
    """
    whole = round(seconds)
    if whole < 120:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
