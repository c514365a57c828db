"""Image files read lazily: `ImageFiles`, an image folder streamed from disk instead of held.

`ImageFiles` stands where a folder's uint8 array would (N, H, W) for grey images or
(N, H, W, 3) for RGB ones: it has `shape`, `ndim`, `dtype` and `len`, slicing or indexing
it with an index array gives another `ImageFiles`, and `np.asarray` decodes it. Each file
is decoded by the one decoder (`tfcnn.images.prepare.decode_for_model`), so a streamed
image has the pixels an in-memory one has, bit for bit. `tfcnn.data.pipeline` turns it into
a `tf.data` pipeline that decodes in parallel, batch by batch.

Files are checked from their headers before training (`tfcnn.images.decode.probe_image`:
unreadable ones are skipped and reported, as for in-memory folders). A file damaged after
its header fails only when decoded: it is then fed as a black image and recorded in
`failures` (shared by every view of the same folder), which training reports.

Example:
    >>> files = ImageFiles(["a.jpg", "b.jpg"], 48, 48, 3)
    >>> files.shape, files[1:].shape
    ((2, 48, 48, 3), (1, 48, 48, 3))
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tfcnn.images.decode import ImageError
from tfcnn.images.prepare import decode_for_model


def reason(error: ImageError, path: str) -> str:
    """The decoder's one-line message without its leading "PATH: "."""
    text = str(error)
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else text


class ImageFiles:
    """Image files as a lazy uint8 image array; see the module doc."""

    def __init__(self, paths: Any, height: int, width: int, channels: int,
                 failures: list[tuple[str, str]] | None = None) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {channels}")
        self.paths = np.asarray(paths, dtype=object).reshape(-1)
        self.height, self.width, self.channels = height, width, channels
        self.failures = [] if failures is None else failures

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's shape as the arrays have it: (H, W) grey, (H, W, 3) RGB."""
        hw = (self.height, self.width)
        return hw if self.channels == 1 else (*hw, 3)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, shape {self.shape})"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | np.integer):
            return self.decode(self.paths[key])
        return ImageFiles(self.paths[key], self.height, self.width, self.channels,
                          self.failures)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.decode_many(self.paths)
        return out if dtype is None else out.astype(dtype)

    def decode_many(self, paths: Any) -> np.ndarray:
        """Several files' pixels, stacked (N, *image_shape); see `decode`."""
        out = np.empty((len(paths), *self.image_shape), dtype=np.uint8)
        for i, path in enumerate(paths):
            out[i] = self.decode(path)
        return out

    def decode(self, path: str | bytes) -> np.ndarray:
        """One file's pixels (`image_shape`); a file that fails is black and recorded."""
        try:
            pixels = decode_for_model(path, self.height, self.width, self.channels)
        except ImageError as exc:
            name = os.fsdecode(path)
            if all(name != failed for failed, _ in self.failures):  # once, not every epoch
                self.failures.append((name, reason(exc, name)))
            return np.zeros(self.image_shape, dtype=np.uint8)
        return pixels.reshape(self.image_shape)

    def same_files(self, other: object) -> bool:
        """Whether `other` is the same files read at the same size."""
        return (isinstance(other, ImageFiles) and self.shape == other.shape
                and bool(np.array_equal(self.paths, other.paths)))
