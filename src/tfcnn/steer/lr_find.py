"""`tfcnn.lr_find`: the learning-rate range test (Smith 2015; fastai's `lr_find`).

The fresh network `tfcnn train` would build for the same settings (its head sized to the
data, its augmentation, precision and optimizer: Adam, or AdamW with a weight decay) trains
one batch a step while the learning rate rises exponentially from `start_lr` to `end_lr`.
Each step's training loss is recorded; the test stops once their running average (a
debiased exponential moving average, weight `SMOOTHING`) passes `DIVERGE` times its lowest,
or a loss is not finite. The curve shown and judged is that average run forwards, then
backwards over the result (as a zero-phase filter does): without a running average's lag.
fastai's weight 0.98 lags by about 50 steps, and over the default 100 steps it moved the
lowest point of a test on MNIST (8C3-P2-D10) from lr 0.12 to 0.72, well past where the
batch losses had started to scatter; with 0.8 both ways the lowest point is at 0.12, as
with 0.7 (0.9 smears the fall about a decade earlier). Nothing is saved but the figure
and the record.

Suggested rate: the rate at the lowest smoothed loss, divided by 10 (fastai's `lr_min`:
the lowest point is already at the edge of divergence, a tenth of it trains steadily),
kept within the rates tried, to two significant digits. The steepest descent of the
smoothed loss (per decade of rate, before its lowest point) is recorded beside it.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_write_json
from tfcnn.core.spelling import Spelling, caller
from tfcnn.steer.command import changed_settings, train_command
from tfcnn.steer.space import rounded

SMOOTHING = 0.8
DIVERGE = 4.0
RULE = "the learning rate at the lowest smoothed loss, divided by 10"


@dataclass(frozen=True)
class LRFind:
    """The range test's result: the rates tried, their smoothed losses, the suggestion."""

    suggested_lr: float
    lrs: tuple[float, ...]
    losses: tuple[float, ...]        # smoothed
    raw_losses: tuple[float, ...]    # each step's own batch loss
    png: Path
    json: Path
    command: str                     # `tfcnn train ... --lr SUGGESTED`
    min_loss_lr: float               # the rate at the lowest smoothed loss
    steepest_lr: float | None        # the steepest descent's rate (None: too few steps)
    stopped: str | None              # why it ended before end_lr, if it did
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """lr_find.json's object."""
        return {"suggested_lr": self.suggested_lr, "rule": RULE,
                "min_loss_lr": self.min_loss_lr, "steepest_lr": self.steepest_lr,
                "png": str(self.png), "json": str(self.json), "command": self.command,
                "stopped": self.stopped, "lrs": list(self.lrs), "losses": list(self.losses),
                "raw_losses": list(self.raw_losses), "settings": self.settings}

    def describe(self) -> str:
        """One line: what was tried and where the loss was lowest."""
        s = self.settings
        ended = f"; {self.stopped}" if self.stopped else ""
        return (f"LR range test: {len(self.lrs)} of {s['steps']} steps from "
                f"{s['start_lr']:g} to {s['end_lr']:g}{ended}; lowest smoothed loss "
                f"{min(self.losses):.4f} at lr {self.min_loss_lr:.3g}")


def lr_find(config: TrainConfig | Mapping[str, Any] | None = None, *,
            out: str | os.PathLike[str], start_lr: float = 1e-7, end_lr: float = 1.0,
            steps: int = 100, **settings: Any) -> LRFind:
    """Run the learning-rate range test for the run `config` and `settings` describe.

    `config`: a `TrainConfig` or a dict of settings; `settings`: any `TrainConfig` field
    as a keyword (as for `tfcnn.train`; `lr`, `schedule`, `epochs` and `time_budget` play
    no part); `out`: the folder for lr_find.png and lr_find.json; the rate rises from
    `start_lr` to `end_lr` over `steps` batches. Returns an `LRFind`; its `suggested_lr` is
    the rate at the lowest smoothed loss / 10, and `command` the `tfcnn train` line with it.

    Example:
        >>> found = tfcnn.lr_find(model="8C3-P2-D10", limit_train=500, seed=1, steps=40,
        ...                       data_dir=data_dir, out=tmp / "lr")
        >>> 1e-7 <= found.suggested_lr <= 1, found.png.name
        (True, 'lr_find.png')
    """
    name = caller()
    _check_range(start_lr, end_lr, steps, name)
    run_config, given = _config_of(config, settings, name)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{name('out')} {folder}: not a folder")
    lrs, raw = _sweep(run_config, start_lr, end_lr, steps)
    lrs, raw, stopped = _until_divergence(lrs, raw)
    if not raw:
        raise ConfigError(f"{name('start_lr')} {start_lr:g}: the loss was not finite at the "
                          "first step; start lower")
    smooth = centred(raw)
    suggested, at_min, steepest = suggestion(lrs, smooth)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"start_lr": start_lr, "end_lr": end_lr, "steps": steps,
              "smoothing": SMOOTHING, "diverge": DIVERGE, "config": run_config.to_dict()}
    command = train_command({k: v for k, v in given.items() if k != "lr"},
                            ["--lr", f"{suggested:g}"])
    found = LRFind(suggested, tuple(lrs), tuple(smooth), tuple(raw), folder / "lr_find.png",
                   folder / "lr_find.json", command, at_min, steepest, stopped, record)
    plot_lr_find(found, f"{run_config.model} on {run_config.dataset}")
    atomic_write_json(found.json, found.to_json())
    return found


def _check_range(start_lr: Any, end_lr: Any, steps: Any, name: Spelling) -> None:
    for key, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name(key)}: expected a positive number, got {value!r}")
    if end_lr <= start_lr:
        raise ConfigError(f"{name('end_lr')}: expected more than {name('start_lr')} "
                          f"{start_lr:g}, got {end_lr:g}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 5:
        raise ConfigError(f"{name('steps')}: expected an integer of at least 5, got {steps!r}")


def _config_of(config: TrainConfig | Mapping[str, Any] | None, settings: dict[str, Any],
               name: Spelling) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's settings (seed drawn when not given) and the settings as given."""
    from tfcnn.api.training import check_settings, training_config

    if isinstance(config, TrainConfig):
        run_config = config.replace(**settings) if settings else config
        given = changed_settings(run_config)
    elif config is None or isinstance(config, Mapping):
        given = {k: v for k, v in {**(config or {}), **settings}.items() if v is not None}
        run_config = training_config(given, name=name)
    else:
        raise ConfigError(f"config: expected a TrainConfig or a dict of settings, got "
                          f"{type(config).__name__}")
    check_settings(run_config, name=name)
    _check_head(run_config)
    if run_config.seed is None:
        run_config = run_config.replace(seed=secrets.randbelow(2**31))
    return run_config, given


def _check_head(config: TrainConfig) -> None:
    """A written notation whose logits disagree with the classes fails before TensorFlow."""
    from tfcnn.data.source import class_names_of
    from tfcnn.spec import notation
    from tfcnn.training.sizing import fit_head

    model_name, written = notation.resolve_model(config.model)
    fit_head(config, model_name, written, config.dataset, len(class_names_of(config)))


def rates(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """`steps` rates rising exponentially from `start_lr` to `end_lr`."""
    return [start_lr * (end_lr / start_lr) ** (i / (steps - 1)) for i in range(steps)]


def smoothed(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """The debiased exponential moving average of `losses` (stops at a non-finite one)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            break
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def centred(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """The running average of `losses`, then of that backwards: smooth, with no lag."""
    return smoothed(smoothed(losses, beta)[::-1], beta)[::-1]


def _until_divergence(lrs: list[float], raw: list[float]
                      ) -> tuple[list[float], list[float], str | None]:
    """The steps up to where the running average passed DIVERGE x its lowest (or a loss
    was not finite), and why it stopped there (None: it reached the last rate)."""
    running = smoothed(raw)
    best = math.inf
    for i, value in enumerate(running):
        best = min(best, value)
        if value > DIVERGE * best:
            return (lrs[:i + 1], raw[:i + 1],
                    f"stopped at lr {lrs[i]:.3g}: the loss passed {DIVERGE:g}x its lowest")
    n = len(running)
    if n < len(raw):
        return lrs[:n], raw[:n], f"stopped at lr {lrs[n]:.3g}: the loss was not finite"
    return lrs, raw, None


def suggestion(lrs: list[float], smooth: list[float]) -> tuple[float, float, float | None]:
    """(suggested rate, rate at the lowest smoothed loss, steepest descent's rate or None)."""
    lowest = int(np.argmin(smooth))
    at_min = lrs[lowest]
    suggested = min(max(rounded(at_min / 10, 2), lrs[0]), lrs[-1])
    skip = max(1, len(smooth) // 10)  # the first steps' average is still settling
    steepest = None
    if lowest - skip >= 2:
        part = slice(skip, lowest + 1)
        slope = np.gradient(np.asarray(smooth[part]), np.log10(np.asarray(lrs[part])))
        steepest = float(lrs[skip + int(np.argmin(slope))])
    return suggested, at_min, steepest


def diverged(losses: list[float]) -> bool:
    """Whether the test should stop after these batch losses (see `_until_divergence`)."""
    smooth = smoothed(losses)
    return len(smooth) < len(losses) or smooth[-1] > DIVERGE * min(smooth)


def _sweep(config: TrainConfig, start_lr: float, end_lr: float, steps: int
           ) -> tuple[list[float], list[float]]:
    """Train the fresh network one batch a step at rising rates; (rates, batch losses)."""
    from tfcnn.core.tfenv import import_tensorflow

    import_tensorflow()  # its start-up chatter hidden, as for train
    from tfcnn.steer.lr_sweep import sweep

    lrs = rates(start_lr, end_lr, steps)
    losses = sweep(config, lrs, diverged)
    return lrs[:len(losses)], losses


def plot_lr_find(found: LRFind, title: str) -> Path:
    """Loss against learning rate (log axis), the lowest point and the suggestion marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfcnn.evaluation.plots import save_figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(found.lrs, found.raw_losses, color="0.75", linewidth=0.8, label="batch loss")
    ax.plot(found.lrs, found.losses, color="C0", linewidth=2, label="smoothed loss")
    lowest = int(np.argmin(found.losses))
    ax.plot([found.min_loss_lr], [found.losses[lowest]], "o", color="C3",
            label=f"lowest: lr {found.min_loss_lr:.3g}")
    ax.axvline(found.suggested_lr, color="C2", linestyle="--",
               label=f"suggested: lr {found.suggested_lr:g} (lowest / 10)")
    ax.set_xscale("log")
    top = max(found.losses[0], min(max(found.losses), DIVERGE * found.losses[lowest]))
    ax.set_ylim(bottom=min(found.losses) * 0.9, top=top * 1.1)
    ax.set_xlabel("Learning rate (log scale)")
    ax.set_ylabel("Training loss")
    ax.set_title(f"LR range test: {title}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    FigureCanvasAgg(fig)
    return save_figure(fig, found.png)
