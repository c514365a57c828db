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
    # Shortest time to >= 99.0% MNIST test accuracy on a 2-core CPU: a LeNet-like net with
    # batch norm (ReLU after each pool, which costs less and computes the same), batch 128
    # for throughput (about twice the images/s of batch 32), two epochs of one-cycle Adam
    # peaking at 0.008, no dropout. Chosen among ~10 short trials (docs/benchmarks.md).
    "fast": {
        "model": "20C5-P2-BN-40C5-P2-BN-D10",
        "batch_size": 128,
        "epochs": 2,
        "lr": 0.008,
        "schedule": "onecycle",
        "warmup": 0.2,
    },
}


def config_from_preset(name: str | None, given: dict[str, Any]) -> TrainConfig:
    """TrainConfig from a preset's settings overridden by the explicitly `given` ones."""
    if name is None:
        return TrainConfig(**given)
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: unknown (known: {', '.join(sorted(PRESETS))})")
    return TrainConfig(**{**PRESETS[name], **given, "preset": name})
