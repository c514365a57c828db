"""The images an audit looks at: every labelled image of a dataset, with its name and split.

`load_audit_data("folder:PATH")` scans the folder as `tfcnn train` does (`scan_image_folder`:
one sub-folder per class, or `train/` and `test/` (or `val/`) folders of class folders) and
decodes each file with the one decoder (`decode_for_model`) at the audit's size; it also reads
each file's own size and colour mode from its header (for the odd-image checks). Files the
decoder refuses are kept as (path, reason) in `skipped`, as the folder loader reports them.
A registered dataset (`mnist`, ...) gives its training and test images, named
`mnist/train/123` and `mnist/test/45` (no files, so no sizes or modes).

Train and test images are audited together: a wrong label in the test set distorts every
accuracy measured on it. Numpy and Pillow only: no TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tfcnn.core.errors import DatasetError, ImageError
from tfcnn.data.files import reason
from tfcnn.data.folders import parse_folder_spec, scan_image_folder, split_dirs
from tfcnn.data.locate import load_dataset
from tfcnn.images.prepare import decode_for_model

TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class AuditData:
    """Every readable labelled image of a dataset, in one array.

    `images`: uint8 (N, H, W) grey or (N, H, W, 3); `labels`: int64 (N,); `files[i]`: the
    image's path (folders) or `NAME/SPLIT/INDEX` (registered datasets); `splits[i]`: "train"
    or "test"; `roots[i]`: the folder holding the image's class folder (folders only, else
    ""); `sizes` (N, 2) width and height as stored and `modes[i]` the Pillow colour mode
    (folders only, else None); `skipped`: (path, reason) of files that could not be used.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    splits: list[str]
    class_names: tuple[str, ...]
    skipped: list[tuple[str, str]]
    roots: list[str]
    sizes: np.ndarray | None = None
    modes: list[str] | None = None

    @property
    def is_folder(self) -> bool:
        """Whether the images are files of a `folder:` dataset (fixes can move them)."""
        return self.sizes is not None

    @property
    def has_test_split(self) -> bool:
        """Whether some images are test images (leaks between the splits can exist)."""
        return TEST in self.splits


def load_audit_data(dataset: str, data_dir: str | os.PathLike[str] | None = None, *,
                    image_size: tuple[int, int] = (28, 28), grayscale: bool = True
                    ) -> AuditData:
    """The images of `dataset` (`folder:PATH` or a registered name); see the module doc."""
    root = parse_folder_spec(dataset)
    if root is None:
        return _registered(dataset, data_dir)
    if data_dir is not None:
        raise DatasetError(f"--data-dir: only for registered datasets, not {dataset!r} (the "
                           "folder is the data)")
    return _folder(dataset, root, image_size, 1 if grayscale else 3)


def _registered(name: str, data_dir: str | os.PathLike[str] | None) -> AuditData:
    loaded = load_dataset(name, data_dir)
    images = np.concatenate([loaded.x_train, loaded.x_test])
    labels = np.concatenate([loaded.y_train, loaded.y_test]).astype(np.int64)
    files = ([f"{loaded.name}/{TRAIN}/{i}" for i in range(len(loaded.y_train))]
             + [f"{loaded.name}/{TEST}/{i}" for i in range(len(loaded.y_test))])
    splits = [TRAIN] * len(loaded.y_train) + [TEST] * len(loaded.y_test)
    return AuditData(loaded.name, images, labels, files, splits, loaded.class_names, [],
                     [""] * len(files))


@dataclass
class _Part:
    """One class-folder tree's decoded images, in scan order."""

    images: list[np.ndarray]
    labels: list[int]
    files: list[str]
    sizes: list[tuple[int, int]]
    modes: list[str]
    class_names: tuple[str, ...]
    skipped: list[tuple[str, str]]


def _folder(name: str, root: Path, size: tuple[int, int], channels: int) -> AuditData:
    dirs = split_dirs(root)
    trees = [(root, TRAIN)] if dirs is None else [(dirs[0], TRAIN), (dirs[1], TEST)]
    parts = [(_decode_tree(tree, size, channels), split, tree) for tree, split in trees]
    class_names = parts[0][0].class_names
    for part, _, tree in parts[1:]:
        if part.class_names != class_names:
            raise DatasetError(f"{tree}: class folders {list(part.class_names)} differ from "
                               f"{trees[0][0]}'s {list(class_names)}")
    images = [im for part, _, _ in parts for im in part.images]
    if not images:
        raise DatasetError(f"{root}: no readable images")
    labels = [y for p, _, _ in parts for y in p.labels]
    _check_every_class_read(root, class_names, labels)
    shape = (*size, channels) if channels == 3 else size
    return AuditData(
        name=name, images=np.stack(images).reshape(len(images), *shape),
        labels=np.asarray(labels, np.int64),
        files=[f for p, _, _ in parts for f in p.files],
        splits=[split for p, split, _ in parts for _ in p.files],
        class_names=class_names,
        skipped=[s for p, _, _ in parts for s in p.skipped],
        roots=[str(tree) for p, _, tree in parts for _ in p.files],
        sizes=np.asarray([s for p, _, _ in parts for s in p.sizes], np.int64).reshape(-1, 2),
        modes=[m for p, _, _ in parts for m in p.modes])


def _check_every_class_read(root: Path, class_names: tuple[str, ...], labels: list[int]) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts, strict=True) if not count]
    if empty:
        raise DatasetError(f"{root}: class folder(s) {', '.join(empty)} have no readable "
                           "images; each class needs at least one")


def _decode_tree(tree: Path, size: tuple[int, int], channels: int) -> _Part:
    """Every file of one class-folder tree through the one decoder, plus its header's size
    and mode (read after the decoder accepted the file, so it is a regular image file)."""
    scan = scan_image_folder(tree)
    part = _Part([], [], [], [], [], scan.class_names, list(scan.skipped))
    for path, label in zip(scan.files, scan.labels, strict=True):
        try:
            pixels = decode_for_model(path, *size, channels)
            with Image.open(path) as header:
                stored_size, mode = header.size, header.mode
        except ImageError as e:
            part.skipped.append((path, reason(e, path)))
            continue
        except OSError as e:  # the file changed between the two reads
            part.skipped.append((path, f"cannot read ({e})"))
            continue
        part.images.append(pixels)
        part.labels.append(label)
        part.files.append(path)
        part.sizes.append(stored_size)
        part.modes.append(mode)
    return part
