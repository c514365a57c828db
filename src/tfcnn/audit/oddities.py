"""Class balance and odd images: the parts of an audit that need no model.

- Classes: images per class (and per split), each class's share, and the imbalance ratio
  (largest class / smallest).
- Odd images, each with the reason:
  - `near-constant`: grey pixel standard deviation at most 2 of 255 at the audit's size (a
    blank, a solid colour, a failed scan); no MNIST or fashion_photos image is that flat;
  - `size` (folders): a stored side more than `SIZE_FACTOR` times the median side, or less
    than its 1/`SIZE_FACTOR` (a thumbnail among photos, a poster among thumbnails: resized
    to the audit's size, it looks unlike the others);
  - `mode` (folders): a colour mode (Pillow's: L, RGB, RGBA, P, ...) that under `RARE_MODE`
    of the images have, when most have another one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcnn.audit.data import TEST, TRAIN, AuditData
from tfcnn.audit.similar import NEAR_CONSTANT_STD, pixel_std

SIZE_FACTOR = 3.0
RARE_MODE = 0.05


@dataclass(frozen=True)
class OddImage:
    """An image unlike the others, and why (`kind`: near-constant, size or mode)."""

    index: int
    file: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "detail": self.detail}


def class_counts(data: AuditData) -> list[dict[str, Any]]:
    """One entry per class: name, count, train and test counts, share of all images."""
    total = len(data.labels)
    splits = np.asarray(data.splits)
    entries = []
    for label, name in enumerate(data.class_names):
        mine = data.labels == label
        entries.append({"name": name, "count": int(mine.sum()),
                        TRAIN: int((mine & (splits == TRAIN)).sum()),
                        TEST: int((mine & (splits == TEST)).sum()),
                        "share": round(float(mine.sum()) / total, 6) if total else 0.0})
    return entries


def balance(classes: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest and smallest class and their ratio (None when a class has no images)."""
    largest = max(classes, key=lambda c: c["count"])
    smallest = min(classes, key=lambda c: c["count"])
    ratio = largest["count"] / smallest["count"] if smallest["count"] else None  # JSON: null
    return {"largest": largest["name"], "smallest": smallest["name"],
            "imbalance_ratio": None if ratio is None else round(ratio, 4)}


def odd_images(data: AuditData) -> list[OddImage]:
    """Every near-constant image, and for folders those of unusual size or colour mode."""
    odd = []
    for i in np.flatnonzero(pixel_std(data.images) <= NEAR_CONSTANT_STD):
        std = float(pixel_std(data.images[i:i + 1])[0])
        odd.append(OddImage(int(i), data.files[i], "near-constant",
                            f"pixel standard deviation {std:.2f} of 255"))
    if data.sizes is not None and len(data.sizes):
        odd += _odd_sizes(data, data.sizes)
    if data.modes:
        odd += _odd_modes(data, data.modes)
    return sorted(odd, key=lambda o: (o.index, o.kind))


def _odd_sizes(data: AuditData, sizes: np.ndarray) -> list[OddImage]:
    median = np.median(sizes, axis=0)
    ratio = sizes / np.maximum(median, 1)
    far = (ratio > SIZE_FACTOR).any(axis=1) | (ratio < 1 / SIZE_FACTOR).any(axis=1)
    width, height = (int(round(v)) for v in median)
    return [OddImage(int(i), data.files[i], "size",
                     f"{sizes[i][0]}×{sizes[i][1]} px; the median is {width}×{height}")
            for i in np.flatnonzero(far)]


def _odd_modes(data: AuditData, modes: list[str]) -> list[OddImage]:
    counts = Counter(modes)
    common, _ = counts.most_common(1)[0]
    rare = {mode for mode, n in counts.items() if mode != common and n < RARE_MODE * len(modes)}
    share = 100 * counts[common] / len(modes)
    return [OddImage(i, data.files[i], "mode",
                     f"colour mode {mode}; {share:.0f}% of the images are {common}")
            for i, mode in enumerate(modes) if mode in rare]
