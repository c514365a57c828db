"""Training presets: named, measured recipes that fill in `TrainConfig` settings.

A preset only supplies defaults: flags given on the command line still win. Each recipe's
measured result, with the command that reproduces it, is in docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any

from tfcnn.config import TrainConfig
from tfcnn.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # TrainConfig's own defaults: the tutorial's run.
    "tutorial": {},
}


def config_from_preset(name: str | None, given: dict[str, Any]) -> TrainConfig:
    """TrainConfig from a preset's settings overridden by the explicitly `given` ones."""
    if name is None:
        return TrainConfig(**given)
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: unknown (known: {', '.join(sorted(PRESETS))})")
    return TrainConfig(**{**PRESETS[name], **given, "preset": name})
