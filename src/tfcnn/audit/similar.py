"""Exact and near-duplicate images, within a split and across train/test (leaks).

- Exact duplicates: identical decoded pixels (at the audit's size) — the same picture saved
  twice, under another name or format.
- Near-duplicates: the same picture re-encoded, resized or with its brightness changed.
  Each image's descriptor is its grey 8×8 box-averaged thumbnail, centred and scaled to unit
  length: the dot product of two is the correlation of the thumbnails, which brightness and
  contrast do not change. A pair is near when 1 - correlation is at most `THUMB_DISTANCE`
  for the thumbnails and at most `DISTANCE` for the full images at the audit's size (the
  reported `distance`: 0 is the same picture up to brightness and contrast), and once their
  brightness and contrast are matched, at most `MAX_APART` of the pixels differ by more than
  `PIXEL_APART` (a stroke one pixel to the side is another picture).

Why these and not an average or difference hash: on MNIST digits, whose black backgrounds
make most hash bits equal, 64-bit dHash and aHash put the nearest other digit at Hamming
distance 0-2 for half the images, while re-encoded copies of a digit were 7-23 bits from it
(dHash). With the two correlation limits alone, 14 pairs of 6,000 distinct MNIST digits
(strokes of "1" nearly alike) were flagged, and 1,664 pairs of all 70,000; 99-100% of JPEG-60,
2x-enlarged and brightened copies were found. The pixel limit separated the two: those 14
pairs had 0.64-3.6% of their pixels 64 levels apart, the copies at most 0.38%. Among 3,000
distinct fashion_photos images no pair was flagged, and 86-87% of such copies were found
(photos on a white background leave little contrast at 28×28 grey), the same with the
pixel limit or without.

Near-constant images (see `oddities`) are compared only for exact copies: their correlation
is noise. All pairs are compared, in blocks of rows (a 70,000-image set is 2.5e9 pairs of
64-value descriptors: ~14 s here; 6,000 images 0.1 s).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.audit.data import AuditData

THUMB = 8
THUMB_DISTANCE = 0.005
DISTANCE = 0.03
PIXEL_APART = 0.25  # of the 0-1 range: 64 of 255 levels
MAX_APART = 0.005   # share of the pixels that may be that far apart
NEAR_CONSTANT_STD = 2.0  # pixel standard deviation (0-255) at or under which an image is flat
BLOCK_VALUES = 20_000_000  # similarity values computed at once (80 MB of float32)
MAX_PAIRS = 10_000  # pairs listed of each kind; the counts are always complete


@dataclass(frozen=True)
class Pair:
    """Two images that are the same picture (`exact`) or nearly (`distance` > 0)."""

    a: int
    b: int
    distance: float
    exact: bool

    def to_json(self, data: AuditData) -> dict[str, Any]:
        names = data.class_names
        return {"a": data.files[self.a], "b": data.files[self.b],
                "distance": round(self.distance, 6), "exact": self.exact,
                "labels": [names[data.labels[self.a]], names[data.labels[self.b]]],
                "splits": [data.splits[self.a], data.splits[self.b]]}


def grey(images: np.ndarray) -> np.ndarray:
    """float32 (N, H, W) grey images in 0-255 (RGB by ITU-R 601 luma, as Pillow's "L")."""
    x = images.astype(np.float32)
    if x.ndim == 4:
        x = x @ np.asarray([0.299, 0.587, 0.114], np.float32)
    return x


def pixel_std(images: np.ndarray) -> np.ndarray:
    """Each image's grey pixel standard deviation (0-255)."""
    return grey(images).reshape(len(images), -1).std(axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def thumbnails(images: np.ndarray, size: int = THUMB) -> np.ndarray:
    """Unit-length centred grey `size`×`size` box-averaged thumbnails, (N, size²)."""
    g = grey(images)
    small = np.stack([np.asarray(Image.fromarray(im).resize(
        (size, size), Image.Resampling.BOX), np.float32) for im in g]) if len(g) else \
        np.zeros((0, size, size), np.float32)
    return _unit_rows(small)


def exact_pairs(images: np.ndarray) -> list[Pair]:
    """Each image identical to an earlier one, paired with the first of its group."""
    first: dict[bytes, int] = {}
    pairs = []
    for i, image in enumerate(images):
        key = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
        if key in first:
            pairs.append(Pair(first[key], i, 0.0, True))
        else:
            first[key] = i
    return pairs


def pixels_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of grey images (rows of 0-1 values): the share of pixels of `b` more than
    `PIXEL_APART` from `a` once `a`'s brightness and contrast are matched to `b`'s (least
    squares)."""
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    scale = (ac * bc).sum(1, keepdims=True) / np.maximum((ac * ac).sum(1, keepdims=True), 1e-9)
    return (np.abs(bc - scale * ac) > PIXEL_APART).mean(1)


def near_pairs(images: np.ndarray, skip: np.ndarray) -> list[Pair]:
    """Pairs (i < j) within all three limits (module doc); images with `skip` left out."""
    keep = np.flatnonzero(~skip)
    thumbs = thumbnails(images[keep])
    values = grey(images[keep]).reshape(len(keep), -1) / 255
    full = _unit_rows(values)
    pairs: list[Pair] = []
    start = 0
    while start < len(keep):
        rows = max(1, BLOCK_VALUES // (len(keep) - start))
        # Only the columns from `start` on: the pairs with earlier images were done already.
        i, j = np.nonzero(thumbs[start:start + rows] @ thumbs[start:].T
                          >= 1.0 - THUMB_DISTANCE)
        i, j = i + start, j + start
        i, j = i[j > i], j[j > i]
        distance = 1.0 - np.einsum("ij,ij->i", full[i], full[j])
        i, j, distance = i[distance <= DISTANCE], j[distance <= DISTANCE], distance[
            distance <= DISTANCE]
        alike = pixels_apart(values[i], values[j]) <= MAX_APART
        pairs += [Pair(int(keep[a]), int(keep[b]), float(max(d, 0.0)), False)
                  for a, b, d in zip(i[alike], j[alike], distance[alike], strict=True)]
        start += rows
    return pairs


@dataclass(frozen=True)
class Duplicates:
    """Pairs within a split (`duplicates`) and across train and test (`leaks`)."""

    duplicates: list[Pair]
    leaks: list[Pair]

    def conflicting(self, labels: np.ndarray) -> int:
        """Pairs whose two images carry different labels."""
        return sum(1 for p in self.duplicates + self.leaks if labels[p.a] != labels[p.b])


def find_duplicates(data: AuditData) -> Duplicates:
    """Exact and near pairs of `data`'s images, split into duplicates and leaks."""
    exact = exact_pairs(data.images)
    twins = {p.b for p in exact}
    flat = pixel_std(data.images) <= NEAR_CONSTANT_STD
    skip = flat.copy()
    skip[list(twins)] = True  # an exact copy's near pairs are its original's
    found = sorted(exact + near_pairs(data.images, skip), key=lambda p: (p.distance, p.a, p.b))
    by_kind: dict[bool, list[Pair]] = defaultdict(list)
    for pair in found:
        by_kind[data.splits[pair.a] != data.splits[pair.b]].append(pair)
    return Duplicates(by_kind[False], by_kind[True])
