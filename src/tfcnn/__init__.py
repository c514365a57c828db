"""tfcnn: convolutional image classifiers with TensorFlow 2 / Keras 3.

The public API, importable from here without loading TensorFlow until a name is used:

    >>> import tfcnn
    >>> run = tfcnn.train(model="8C3-P2-D10", epochs=1, limit_train=1000, limit_test=200,
    ...                   data_dir=data_dir, out=tmp / "first", seed=1, verbose=False)
    >>> clf = run.load()                                    # a tfcnn.Classifier
    >>> clf.predict(digit_files)[0].label in clf.class_names
    True
    >>> 0.5 < clf.evaluate().accuracy <= 1
    True

Names: `train`, `open_run`, `Run`, `load`, `Classifier`, `Prediction`, `Report`,
`Explanation`, `audit`, `AuditReport`, the steering tools `runs`, `show_batch`, `lr_find`
and `tune`, `datasets`, and the errors `TfcnnError` (every
problem a user can fix),
`DatasetError`, `ModelSpecError`, `ConfigError`, `RunDirError`, `ImageError`,
`TrainingInterrupted`. They are resolved lazily (PEP 562), so `import tfcnn` and
`tfcnn --help` stay instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "tfcnn.api.training",
    "open_run": "tfcnn.api.training",
    "Run": "tfcnn.api.training",
    "load": "tfcnn.api.classifier",
    "Classifier": "tfcnn.api.classifier",
    "Report": "tfcnn.api.report",
    "Prediction": "tfcnn.core.prediction",
    "Explanation": "tfcnn.explain",
    "audit": "tfcnn.audit",
    "AuditReport": "tfcnn.audit",
    "runs": "tfcnn.steer.runs",
    "show_batch": "tfcnn.steer.show",
    "lr_find": "tfcnn.steer.lr_find",
    "tune": "tfcnn.steer.tune",
    "TfcnnError": "tfcnn.core.errors",
    "DatasetError": "tfcnn.core.errors",
    "ModelSpecError": "tfcnn.core.errors",
    "ConfigError": "tfcnn.core.errors",
    "RunDirError": "tfcnn.core.errors",
    "TrainingInterrupted": "tfcnn.core.errors",
    "ImageError": "tfcnn.core.errors",
}
_MODULES = ("datasets",)

__all__ = ["__version__", *_LAZY, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"tfcnn.{name}")
    else:
        raise AttributeError(f"module 'tfcnn' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
