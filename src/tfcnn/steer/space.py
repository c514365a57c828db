"""What `tfcnn tune` searches: learning rate, weight decay, width and augmentation strength,
each around the run the user asked for, and how one trial's values change its settings.

- `lr`: log-uniform from a tenth to ten times the asked learning rate;
- `weight_decay`: one of 0 (plain Adam) and AdamW's 1e-4 .. 0.05, plus the asked one;
- `width`: a multiplier of every filter and unit count but the logits' (0.5 to 2), for a
  named network or a preset's only (a notation the user wrote is taken as written);
- `augment`: a multiplier (0 to 2) of the asked augmentation, or, when none was asked, of
  `BASE_AUGMENTATION` (shifts, rotations, zoom: what suits digits, clothes and photos
  alike; mirroring is never added, as it would hurt digits).

No TensorFlow here; the Keras Tuner objects come in through `declare`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.spec import notation
from tfcnn.spec.backbones import is_backbone_spec
from tfcnn.training.sizing import is_named_network

WIDTHS = (0.5, 1.0, 1.5, 2.0)
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2, 0.05)
AUGMENT_RANGE = (0.0, 2.0, 0.25)  # low, high, step
BASE_AUGMENTATION = {"shift": 2.0, "rotate": 10.0, "zoom": 0.1}
# Settings that say how strong an augmentation is (0: off), scaled by `augment`.
AMOUNTS = ("shift", "rotate", "zoom", "erase", "elastic", "brightness", "contrast",
           "saturation", "hue", "mixup", "cutmix")
# A random crop keeps `crop_area` to all of the image: it is stronger the smaller that is.
SMALLEST_CROP = 0.05
_WIDE_TOKEN = re.compile(r"^(\d+)(SC|C|M)(.*)$|^(R)(\d+)(.*)$|^(D)(\d+)$", re.IGNORECASE)


def rounded(value: float, digits: int = 3) -> float:
    """`value` to `digits` significant digits: short commands, the very values trained."""
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class Space:
    """The search around one base config."""

    base: TrainConfig
    classes: int  # the dataset's: a widened network's logits
    widths: bool  # whether the network's width is searched

    @classmethod
    def around(cls, base: TrainConfig, classes: int) -> Space:
        model_name, written = notation.resolve_model(base.model)
        named = not is_backbone_spec(written) and is_named_network(base, model_name)
        return cls(base, classes, named)

    def declare(self, hp: Any) -> Any:
        """Declare the space on a `keras_tuner.HyperParameters`; returns it."""
        lr = self.base.lr
        hp.Float("lr", rounded(lr / 10), rounded(lr * 10), sampling="log", default=lr)
        decays = sorted({*WEIGHT_DECAYS, self.base.weight_decay})
        hp.Choice("weight_decay", decays, ordered=True, default=self.base.weight_decay)
        if self.widths:
            hp.Choice("width", list(WIDTHS), ordered=True, default=1.0)
        low, high, step = AUGMENT_RANGE
        hp.Float("augment", low, high, step=step, default=1.0)
        return hp

    def changes(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The settings one trial's values give (to put over the base's)."""
        changes: dict[str, Any] = {"lr": rounded(float(values["lr"])),
                                   "weight_decay": float(values["weight_decay"])}
        width = float(values.get("width", 1.0))
        if self.widths and width != 1.0:
            changes["model"] = widened(self.base, width, self.classes)
        changes.update(augmentation(self.base, float(values["augment"])))
        return changes


def widened(base: TrainConfig, width: float, classes: int) -> str:
    """The base's network with every filter and unit count times `width` (at least 1, mirror
    convolutions' even) and one logit per class: a notation, trained as written."""
    _, written = notation.resolve_model(base.model)
    tokens = written.split("-")
    scaled = [_scaled_token(token, width) for token in tokens[:-1]]
    return notation.with_output_units("-".join([*scaled, tokens[-1]]), classes)


def _scaled_token(token: str, width: float) -> str:
    match = _WIDE_TOKEN.match(token)
    if match is None:
        return token  # pooling, batch norm, dropout, GAP: no width
    if match[1]:
        count = max(1, round(int(match[1]) * width))
        if match[2].upper() == "M":
            count = max(2, 2 * round(count / 2))
        return f"{count}{match[2]}{match[3]}"
    if match[4]:
        return f"R{max(1, round(int(match[5]) * width))}{match[6]}"
    return f"D{max(1, round(int(match[8]) * width))}"


def _limit(name: str, value: float) -> float:
    """`value` within the setting's own bounds (a zoom below 1, a hue up to 0.5)."""
    setting = SETTINGS[name]
    if setting.maximum is not None:
        value = min(value, setting.maximum)
    if setting.below is not None:
        value = min(value, setting.below * 0.99)
    return rounded(value)


def augmentation(base: TrainConfig, strength: float) -> dict[str, Any]:
    """The augmentation settings at `strength` times the base's (see the module doc)."""
    asked = {name: getattr(base, name) for name in AMOUNTS if getattr(base, name)}
    if not asked and not base.crop_area:
        asked = dict(BASE_AUGMENTATION)
    changes = {name: 0.0 for name in AMOUNTS}
    changes.update({name: _limit(name, value * strength) for name, value in asked.items()})
    if base.crop_area:
        area = 1 - strength * (1 - base.crop_area)
        changes["crop_area"] = 0.0 if area >= 1 else rounded(max(SMALLEST_CROP, area))
    return changes
