"""`Calibration`: what a model's answers are adjusted by, stored in its config.

- `temperature` T: probabilities are softmax(logits / T) (temperature scaling, Guo et al.
  2017); 1.0 until `tfcnn calibrate` (or a run with a validation split) fits one.
- `ood`: the "unknown" rule, None until fitted: an out-of-distribution score of the logits
  (`score`, e.g. "energy"), the `threshold` above which an input is "unknown", the share of
  in-distribution images it was fitted to accept (`acceptance`) and on which images
  (`fitted_on`: "validation" or "training").

Plain Python (no TensorFlow): the model classes keep it in `get_config`, so it travels in
`model.keras` with the network and its preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Out-of-distribution scores of the logits z, each "higher: less like the training images":
# - "energy" (Liu et al. 2020): −logsumexp(z), the negative free energy's opposite;
# - "max_logit" (Hendrycks et al. 2022): −max z;
# - "max_probability" (Hendrycks & Gimpel 2017): −max softmax(z).
# Which one a model uses is chosen by measurement (docs/benchmarks.md, "Unknown inputs").
OOD_SCORES = ("energy", "max_logit", "max_probability")


def ood_scores(logits: Any, score: str) -> np.ndarray:
    """float64 (N,) out-of-distribution scores of (N, classes) logits (higher: less
    familiar); `score` one of `OOD_SCORES`."""
    z = np.asarray(logits, dtype=np.float64)
    if score not in OOD_SCORES:
        raise ValueError(f"score: expected one of {', '.join(OOD_SCORES)}, got {score!r}")
    top = z.max(axis=1)
    if score == "max_logit":
        return -top
    total = np.log(np.exp(z - top[:, None]).sum(axis=1))  # logsumexp(z) - max(z)
    if score == "energy":
        return -(top + total)
    return -np.exp(-total)  # max softmax = exp(max - logsumexp)


@dataclass(frozen=True)
class OodRule:
    """An input is unknown when `score(logits) > threshold` (higher: less familiar).

    Example:
        >>> rule = OodRule("max_logit", threshold=-5.0, acceptance=0.95, fitted_on="validation")
        >>> rule.unknown(np.array([[9.0, 1.0], [2.0, 1.0]])).tolist()
        [False, True]
    """

    score: str
    threshold: float
    acceptance: float
    fitted_on: str

    def unknown(self, logits: Any) -> np.ndarray:
        """bool (N,): which inputs the rule calls unknown."""
        return ood_scores(logits, self.score) > self.threshold

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """A model's answer adjustments (see the module docstring).

    Example:
        >>> Calibration.from_config({"temperature": 1.5}).temperature
        1.5
        >>> Calibration().to_config()
        {'temperature': 1.0, 'ood': None}
    """

    temperature: float = 1.0
    ood: OodRule | None = field(default=None)

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"temperature: expected a positive number, got {self.temperature!r}")

    def to_config(self) -> dict[str, Any]:
        return {"temperature": float(self.temperature),
                "ood": None if self.ood is None else self.ood.to_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Calibration:
        """From `to_config`'s dict (None or {}: no calibration); ValueError for a bad one."""
        if not config:
            return cls()
        ood = config.get("ood")
        return cls(float(config.get("temperature", 1.0)),
                   None if ood is None else OodRule(str(ood["score"]), float(ood["threshold"]),
                                                    float(ood["acceptance"]),
                                                    str(ood["fitted_on"])))
