"""Stratified, seeded splits of a labelled set: the held-out part of each class, at random.

Used for an image folder's held-out test images and for `--val-split` validation sets of
the registered datasets. Pure numpy: the same (labels, fraction, seed) always gives the
same split, on any machine.
"""

from __future__ import annotations

import math

import numpy as np


def held_out_count(n: int, fraction: float) -> int:
    """Images of a class of `n` to hold out: at least 1 (if n >= 2), never all of them."""
    if fraction == 0 or n < 2:
        return 0
    # floor(x + 0.5): halves round up, unlike Python's round (0.1 * 25 images -> 3, not 2).
    return min(max(1, math.floor(n * fraction + 0.5)), n - 1)


def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices into `labels`, each class split in proportion.

    Both index arrays come in a seeded random order. Classes are taken in label order
    0 .. num_classes - 1, so the draws, and the split, depend on nothing else.
    """
    labels = np.asarray(labels)
    classes = int(labels.max()) + 1 if num_classes is None and labels.size else num_classes or 0
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in range(classes):
        members = np.flatnonzero(labels == label)
        order = members[rng.permutation(len(members))]
        k = held_out_count(len(members), fraction)
        held.append(order[:k])
        kept.append(order[k:])
    empty = np.empty(0, dtype=np.int64)
    kept_all = np.concatenate(kept) if kept else empty
    held_all = np.concatenate(held) if held else empty
    return rng.permutation(kept_all), rng.permutation(held_all)
