"""Helpers shared by the model and training tests: tiny datasets, real-data lookup, subprocesses."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

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


def probabilities(model, images):
    """An independent reference for tests: the softmax of a Keras model's logits, computed
    here with Keras's own softmax, not through tfcnn's inference path."""
    import keras

    return keras.ops.softmax(model(images, training=False), axis=-1)


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


# Pen strokes of each digit in a unit box (x right, y down): polylines, and ellipses as
# (left, top, right, bottom). Shapes as people write them, not as fonts print them.
STROKES: dict[int, tuple[list[list[tuple[float, float]]], list[tuple[float, ...]]]] = {
    0: ([], [(0.1, 0.0, 0.9, 1.0)]),
    1: ([[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]], []),
    2: ([[(0.1, 0.25), (0.3, 0.04), (0.6, 0.0), (0.85, 0.18), (0.8, 0.45), (0.1, 1.0),
          (0.95, 1.0)]], []),
    3: ([[(0.12, 0.1), (0.5, 0.0), (0.85, 0.15), (0.8, 0.38), (0.42, 0.5)],
         [(0.42, 0.5), (0.88, 0.62), (0.88, 0.88), (0.5, 1.0), (0.1, 0.9)]], []),
    4: ([[(0.65, 1.0), (0.65, 0.0), (0.05, 0.68), (0.95, 0.68)]], []),
    5: ([[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45), (0.55, 0.38), (0.88, 0.55), (0.88, 0.85),
          (0.5, 1.0), (0.1, 0.9)]], []),
    6: ([[(0.75, 0.0), (0.35, 0.22), (0.14, 0.7)]], [(0.12, 0.42, 0.88, 1.0)]),
    7: ([[(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]], []),
    8: ([], [(0.2, 0.0, 0.8, 0.48), (0.1, 0.46, 0.9, 1.0)]),
    9: ([[(0.86, 0.25), (0.78, 1.0)]], [(0.14, 0.0, 0.86, 0.5)]),
}


def digit_mask(digit: int, size: int, printed: bool, pen: float = 0.1) -> Image.Image:
    """A size×size "L" mask of one digit, ink 255, its glyph about 70% of `size` tall."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if printed:
        font = ImageFont.load_default(size=int(size * 0.7))
        if not isinstance(font, ImageFont.FreeTypeFont):
            pytest.skip("Pillow has no FreeType: no scalable default font")
        draw.text((size / 2, size / 2), str(digit), fill=255, font=font, anchor="mm")
        # Thicken the thin font towards a pen's stroke (a dilation: Pillow's stroke_width
        # leaves artefacts inside 6 and 9).
        grow = 2 * int(size * pen / 6) + 1
        return mask.filter(ImageFilter.MaxFilter(grow)) if grow > 1 else mask
    width = max(1, int(size * pen))
    box_w, box_h = size * 0.4, size * 0.7
    x0, y0 = (size - box_w) / 2, (size - box_h) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + x * box_w, y0 + y * box_h

    lines, ellipses = STROKES[digit]
    for line in lines:
        draw.line([at(*p) for p in line], fill=255, width=width, joint="curve")
        for p in (line[0], line[-1]):  # round pen ends
            cx, cy = at(*p)
            draw.ellipse((cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2),
                         fill=255)
    for left, top, right, bottom in ellipses:
        draw.ellipse((*at(left, top), *at(right, bottom)), outline=255, width=width)
    return mask


def draw_digit(digit: int, *, canvas: tuple[int, int] = (200, 160), size: int = 120,
               centre: tuple[float, float] = (0.5, 0.5), angle: float = 0.0,
               printed: bool = True, pen: float = 0.1, ink: tuple[int, ...] = (25, 25, 30),
               paper: tuple[int, ...] = (240, 238, 230), mode: str = "RGB") -> Image.Image:
    """A digit of `size` px on a `canvas` (w, h) page, centred at `centre` (fractions)."""
    mask = digit_mask(digit, size, printed, pen).rotate(angle, Image.Resampling.BICUBIC)
    page = Image.new(mode, canvas, paper if mode != "L" else paper[0])
    solid = Image.new(mode, (size, size), ink if mode != "L" else ink[0])
    page.paste(solid, (int(centre[0] * canvas[0] - size / 2),
                       int(centre[1] * canvas[1] - size / 2)), mask)
    return page


def digit_set(count: int = 50, seed: int = 0) -> list[tuple[int, Image.Image]]:
    """`count` varied digits, 0-9 in turn: printed and drawn, positions, sizes, rotations,
    page and ink colours, a little blur and noise as a photo or scan would have."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        digit = i % 10
        canvas = (rng.randint(120, 400), rng.randint(120, 400))
        size = int(min(canvas) * rng.uniform(0.5, 0.9))
        centre = (rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65))
        paper_level = rng.randint(170, 255)
        ink_level = rng.randint(0, 80)
        image = draw_digit(digit, canvas=canvas, size=size, centre=centre,
                           angle=rng.uniform(-12, 12), printed=i % 20 < 10,
                           pen=rng.uniform(0.07, 0.13),
                           ink=(ink_level, ink_level, ink_level + 20),
                           paper=(paper_level, paper_level - 5, paper_level - 15))
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
        noise = np.random.default_rng(i).normal(0, 6, (canvas[1], canvas[0], 1))
        pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255)
        made.append((digit, Image.fromarray(pixels.astype(np.uint8))))
    return made


def finishes_in_time(call, seconds: float = 30.0, what: str = "the call"):
    """`call()`'s result, run in a thread; a test failure if it hangs (e.g. on a FIFO)."""
    import threading

    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{what} hung"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


# Headless Chromium for the page's browser tests (Debian's package; .ci/run installs it).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def browser_marks() -> list:
    """`pytestmark` of a browser test module: slow, and skipped without Chromium."""
    return [pytest.mark.slow, pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


def parse_explain(*argv: str):
    """`tfcnn explain ARGV` parsed by the explain command's own parser alone."""
    import argparse

    from tfcnn import cli_explain

    parser = argparse.ArgumentParser(prog="tfcnn")
    cli_explain.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["explain", *argv])
