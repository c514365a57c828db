"""Helpers shared by the model and training tests: tiny datasets, real-data lookup, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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


SHAPES = ("circle", "square", "triangle")


def draw_shape(kind: str, size: tuple[int, int], fg: tuple, bg: tuple, mode: str) -> Image.Image:
    im = Image.new(mode, size, bg)
    w, h = size
    box = (w // 5, h // 5, w - w // 5, h - h // 5)
    draw = ImageDraw.Draw(im)
    if kind == "circle":
        draw.ellipse(box, fill=fg)
    elif kind == "square":
        draw.rectangle(box, fill=fg)
    else:
        draw.polygon([(w // 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fg)
    return im


def make_shapes(root: Path, per_class: int = 6) -> Path:
    """3 classes of coloured shapes, sizes 17..60 px, several formats and modes."""
    rng = np.random.default_rng(1)
    formats = ["png", "jpg", "gif", "bmp", "webp", "rgba.png"]
    for kind in SHAPES:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(17, 61)), int(rng.integers(17, 61)))
            fg = tuple(int(c) for c in rng.integers(0, 256, 3))
            bg = tuple(int(c) for c in rng.integers(0, 256, 3))
            fmt = formats[i % len(formats)]
            if fmt == "rgba.png":
                im = draw_shape(kind, size, (*fg, 255), (*bg, 0), "RGBA")
            else:
                im = draw_shape(kind, size, fg, bg, "RGB")
            im.save(root / kind / f"{i:02d}.{fmt.split('.')[-1]}")
    return root
