"""`tfcnn.audit(dataset)`: find wrong labels, duplicates, leaks and odd images in a dataset.

    report = tfcnn.audit("folder:digits", folds=5, time_budget="3m")
    report.label_issues[0]   # {"file": "digits/7/00412.png", "given": "7", "suggested": "1",
                             #  "score": 0.0004, ...}
    report.write_fixes("fixes.csv")

The parts: `data` (the images, with names), `folds` (K-fold cross-training for
out-of-sample probabilities) and `budget` (its time budget), `labels` (cleanlab),
`similar` (duplicates and leaks), `oddities` (class balance, odd images), `report`,
`figures`, `fixes` (the CSV, `--apply`, `--undo`) and `run` (all of it in order).
User documentation: docs/audit.md. Importing this package loads no TensorFlow; running an
audit does.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from tfcnn.audit.budget import DEFAULT_BUDGET
from tfcnn.audit.report import AuditReport

__all__ = ["AuditReport", "audit"]


def audit(dataset: str, *, data_dir: str | os.PathLike[str] | None = None, folds: int = 5,
          time_budget: str | float | None = DEFAULT_BUDGET,
          out: str | os.PathLike[str] | None = None, image_size: str | None = None,
          rgb: bool = False, seed: int = 0, model: str | None = None,
          epochs: int | None = None, batch_size: int | None = None,
          progress: Callable[[str], None] | None = None) -> AuditReport:
    """Audit `dataset` (`folder:PATH`, or a registered name such as `mnist`) and write the
    report folder `out` (default `runs/audit-<dataset>-<time>/`); returns its `AuditReport`.

    - `folds`: K of the K-fold cross-training (2-20) that gives every image probabilities
      from a model that did not train on it;
    - `time_budget`: the cross-training's limit (`"90s"`, `"5m"`, seconds, or None for
      none); the epochs per fold are planned to fit it, from the first fold's measured speed;
    - `image_size` (`"28"`, `"HxW"`) and `rgb`: how folder images are decoded (as for
      `tfcnn train`); `data_dir`: where a registered dataset is;
    - `model` (layer notation), `epochs` and `batch_size`: the fold network, its most epochs
      and its images per step (default the fast preset's network for grey images, a small
      batch-norm one for colour, 12 and 128: see `tfcnn.audit.folds`);
    - `seed`: the folds and the fold models' initialisation; `progress`: called with a line
      of text as each step ends.

    Raises a `TfcnnError` subclass for anything the user can fix (a missing folder, a budget
    too short for even one epoch per fold, ...).
    """
    from tfcnn.audit.folds import Recipe
    from tfcnn.audit.run import run_audit

    changes = {name: value for name, value in
               (("model", model), ("epochs", epochs), ("batch_size", batch_size))
               if value is not None}
    for name in ("epochs", "batch_size"):
        if name in changes:
            _check_positive(name, changes[name])
    recipe = dataclasses.replace(Recipe(), **changes)
    return run_audit(dataset, data_dir=data_dir, folds=folds, time_budget=time_budget,
                     out=out, image_size=image_size, rgb=rgb, seed=seed, recipe=recipe,
                     progress=progress)


def _check_positive(name: str, value: Any) -> None:
    from tfcnn.core.errors import ConfigError

    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")


class _CallableModule(types.ModuleType):
    """This package, callable as `audit`: importing a submodule (`tfcnn.audit.fixes`) makes
    `tfcnn.audit` the package rather than the function, and `tfcnn.audit(...)` must work
    either way (Python's documented way to customise a module: set its `__class__`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> AuditReport:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
