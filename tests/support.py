"""Helpers shared by the model and training tests: tiny datasets, real-data lookup, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def tiny_digits(n_train: int = 256, n_test: int = 64, seed: int = 0):
    """A learnable 10-class set of 28x28 uint8 images: class k lights up band k, plus noise."""
    from tfcnn.data.locate import LoadedDataset

    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        return images, labels

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    return LoadedDataset(name="mnist", x_train=x_train, y_train=y_train, x_test=x_test,
                         y_test=y_test, class_names=tuple("0123456789"), source="tiny_digits")


def run_tfcnn(*args: str, cwd: Path | None = None, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m tfcnn ARGS` in a fresh process and capture its output."""
    return subprocess.run([sys.executable, "-m", "tfcnn", *args], cwd=cwd, timeout=timeout,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def load_weights(path: Path) -> list[np.ndarray]:
    from tfcnn.models.network import load_model

    return load_model(path).get_weights()


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
