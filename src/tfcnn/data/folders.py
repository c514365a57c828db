"""Image-folder datasets (`--dataset folder:PATH`): one sub-folder per class, any image files.

Layout (the torchvision ImageFolder convention)::

    PATH/cat/1.png  PATH/cat/photos/2.jpg  PATH/dog/a.bmp  ...

- Classes are PATH's sub-folders, sorted by plain (case-sensitive, code point) string order,
  so "B" sorts before "a"; label i is the i-th name. At least 2 classes are needed.
- Every regular file under a class folder, in nested folders too, is tried as an image:
  content decides, not the extension. Names starting with "." (files and folders) are
  ignored, and so are files directly in PATH. Symbolic links to files are followed; links to
  folders are not (a link loop would pull another class's images in), and anything that is
  not a regular file (a FIFO, socket or device: reading one can hang) is never opened; both
  are skipped and reported. `scan_image_folder` is this listing alone, without decoding.
- Each file goes through the one image decoder, `tfcnn.images.prepare.decode_for_model`, the
  very function prediction and serving use: PNG, JPEG, BMP, GIF or WebP (first frame), EXIF
  orientation applied, transparency composited on white, 16-bit samples scaled to 8 bits,
  L (grayscale) or RGB, resized to exactly `image_size` (H, W) with Pillow's BILINEAR filter
  (antialiased when downscaling, aspect ratio not kept); a JPEG may decode at 1/2..1/8 scale
  when that still leaves max(H, W) per side. Files it refuses (not an image, empty,
  truncated, over the decode memory cap `tfcnn.images.decode.MAX_DECODE_BYTES` or Pillow's
  `MAX_IMAGE_PIXELS`) are skipped and returned with the reason; a class with no readable
  image is an error.
- The split is stratified and seeded: each class holds out round(test_split * count) images
  (halves round up), at least 1 when it has 2 or more and test_split > 0, and never all of
  them. The held-out images become x_test/y_test; with test_split 0 those are empty
  (0, H, W[, 3]) and training has no test metrics. A ROOT holding `train/` and `test/` (or
  `val/`) folders, each with the same class folders, is split already (`split_dirs`). Both
  parts are in a seeded random order, so `x_train[:n]` is a fair sample across classes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.files import ImageFiles, reason
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.split import stratified_split
from tfcnn.images.decode import ImageError, file_kind, probe_image
from tfcnn.images.prepare import decode_for_model

FOLDER_PREFIX = "folder:"
# Folders whose decoded images would take more than this are streamed from disk by default.
# Held in memory, a folder peaks at ~3x its decoded size (the decoded array, its shuffled
# train/test copies, tf.data's tensor): 200,000 32x32 RGB JPEGs (614 MB decoded) peaked at
# 2.5 GB RSS against 745 MB streamed (benchmarks/folder_memory.py, docs/benchmarks.md).
MEMORY_BYTES = 256 << 20
MAX_SIDE = 4096  # per image side; a typo like 2800 would otherwise ask for tens of GB


@dataclass(frozen=True)
class FolderDataset:
    """A loaded image folder and the files that could not be read, as (path, reason)."""

    dataset: LoadedDataset  # name "folder:<PATH as given>", source the resolved path
    skipped: list[tuple[str, str]]


TRAIN_DIR, TEST_DIRS = "train", ("test", "val")


def split_dirs(root: Path) -> tuple[Path, Path] | None:
    """(ROOT/train, ROOT/test or ROOT/val) when ROOT is a dataset split already, else None
    (ROOT is then a plain class folder, split by `test_split`)."""
    train = Path(root) / TRAIN_DIR
    if not train.is_dir():
        return None
    for name in TEST_DIRS:
        if (Path(root) / name).is_dir():
            return train, Path(root) / name
    if any(e.is_dir() for e in _scan(train)):  # train/<class>/...: a split missing its test
        raise DatasetError(f"{root}: has {TRAIN_DIR}/ with class folders but no "
                           f"{' or '.join(f'{n}/' for n in TEST_DIRS)} beside it (expected "
                           f"{Path(root) / TRAIN_DIR / 'CLASS'} and {Path(root) / 'test' / 'CLASS'}"
                           f"; or pass folder:{train} to hold out --test-split of it)")
    return None


def parse_folder_spec(spec: str) -> Path | None:
    """`"folder:PATH"` -> Path(PATH) with ~ expanded; any other dataset name -> None."""
    if not spec.startswith(FOLDER_PREFIX):
        return None
    path = spec[len(FOLDER_PREFIX):]
    if not path.strip():
        raise ConfigError(f"--dataset {spec!r}: no path after 'folder:' (expected folder:PATH)")
    return Path(path).expanduser()


def parse_image_size(text: str) -> tuple[int, int]:
    """`"28"` -> (28, 28); `"32x48"` -> (32, 48), height x width."""
    parts = text.strip().lower().split("x")
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--image-size {text!r}: expected N or HxW, e.g. 28 or 32x48") from None
    height, width = size if len(size) == 2 else size * 2
    if not all(1 <= s <= MAX_SIDE for s in (height, width)):
        raise ConfigError(f"--image-size {text!r}: height and width must be from 1 to "
                          f"{MAX_SIDE}")
    return height, width


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_options(image_size: object, test_split: object, seed: object) -> None:
    if not (isinstance(image_size, tuple) and len(image_size) == 2
            and all(_is_int(s) and 1 <= s <= MAX_SIDE for s in image_size)):
        raise ConfigError(f"--image-size {image_size!r}: height and width must be whole "
                          f"numbers from 1 to {MAX_SIDE}")
    if not (isinstance(test_split, Real) and not isinstance(test_split, bool)
            and 0 <= test_split < 1):
        raise ConfigError(f"--test-split {test_split!r}: must be a fraction in [0, 1), "
                          "e.g. 0.1")
    if not _is_int(seed):
        raise ConfigError(f"--seed {seed!r}: the split needs a whole-number seed")


def _visible(entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _scan(folder: Path | str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return _visible(list(it))
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list ({e.strerror or e})") from e


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _class_files(folder: str, seen: set[tuple[int, int]],
                 skipped: list[tuple[str, str]]) -> list[str]:
    """Regular files under a class folder, sorted, nested folders in place.

    Symbolic links to folders are not followed and a folder already walked (by device and
    inode: the root, a class folder, a bind mount) is not walked again, so a link loop cannot
    pull another class's images in; anything that is not a regular file (a FIFO, socket or
    device, which could hang a read) is skipped. Both are reported in `skipped`.
    """
    files: list[str] = []
    for entry in _scan(folder):
        try:
            info = os.stat(entry.path)
        except OSError:
            files.append(entry.path)  # a broken link: decoding reports why
            continue
        if stat.S_ISDIR(info.st_mode):
            if entry.is_symlink():
                skipped.append((entry.path, "symbolic link to a folder: not followed"))
            elif _identity(info) not in seen:
                seen.add(_identity(info))
                files.extend(_class_files(entry.path, seen, skipped))
        elif stat.S_ISREG(info.st_mode):
            files.append(entry.path)
        else:
            skipped.append((entry.path, f"not a regular file ({file_kind(info.st_mode)})"))
    return files


def _empty_classes_error(root: Path, names: list[str], why: str) -> DatasetError:
    if len(names) == 1:
        return DatasetError(f"{root / names[0]}: class folder has {why}; each class needs at "
                            "least one image (remove the folder or add images)")
    return DatasetError(f"{root}: class folders {', '.join(names)} have {why}; each class "
                        "needs at least one image")


class FolderScan(NamedTuple):
    """An image folder's files and labels, before decoding (see `scan_image_folder`)."""

    files: list[str]  # every candidate image, class by class, each class's files sorted
    labels: list[int]  # files[i]'s class index
    class_names: tuple[str, ...]
    skipped: list[tuple[str, str]]  # (path, reason): non-regular files, folder links


def _class_dirs(root: Path) -> list[os.DirEntry[str]]:
    if not root.exists():
        raise DatasetError(f"{root}: no such folder (expected one sub-folder of images per class)")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected one sub-folder of images per class)")
    class_dirs = [e for e in _scan(root) if e.is_dir()]
    if not class_dirs:
        raise DatasetError(f"{root}: no class sub-folders (expected one sub-folder of images "
                           f"per class, e.g. {root / 'cat' / '1.png'})")
    if len(class_dirs) < 2:
        raise DatasetError(f"{root}: only one class sub-folder ({class_dirs[0].name}); at least "
                           "2 classes are needed")
    return class_dirs


def class_folder_names(root: Path | str) -> tuple[str, ...]:
    """The class names of an image folder (its sub-folders, in the order training labels
    them), read without opening any image; `DatasetError` as `scan_image_folder` gives."""
    return tuple(e.name for e in _class_dirs(Path(root)))


def scan_image_folder(root: Path | str) -> FolderScan:
    """List an image folder's files per class without decoding any (see module doc).

    Raises `DatasetError` for a missing root, fewer than 2 class folders, or a class folder
    with no files. Returns `FolderScan(files, labels, class_names, skipped)`.
    """
    root = Path(root)
    class_dirs = _class_dirs(root)
    seen = {_identity(os.stat(root))}
    seen.update(_identity(os.stat(e.path)) for e in class_dirs)
    skipped: list[tuple[str, str]] = []
    per_class = [_class_files(e.path, seen, skipped) for e in class_dirs]
    class_names = tuple(e.name for e in class_dirs)
    # Fail before the slow part when a class folder is plainly empty.
    no_files = [name for name, f in zip(class_names, per_class, strict=True) if not f]
    if no_files:
        raise _empty_classes_error(root, no_files, "no files")
    files = [path for paths in per_class for path in paths]
    labels = [label for label, paths in enumerate(per_class) for _ in paths]
    return FolderScan(files, labels, class_names, skipped)


def load_image_folder(root: Path, *, image_size: tuple[int, int] = (28, 28),
                      grayscale: bool = True, test_split: float = 0.1,
                      seed: int = 0, stream: bool | None = False) -> FolderDataset:
    """Load an image folder into a stratified, seeded train/held-out split (see module doc).

    Every file is decoded by `decode_for_model`, as prediction decodes it. With `stream`,
    nothing is decoded yet: files are checked from their headers and the images are
    `ImageFiles` (`tfcnn.data.files`), read from disk when used; the split is the same.
    `stream=None` streams when the decoded images would take more than `MEMORY_BYTES`.
    """
    _check_options(image_size, test_split, seed)
    root = Path(root)
    scan = scan_image_folder(root)
    class_names, skipped = scan.class_names, list(scan.skipped)
    h, w = image_size
    channels = 1 if grayscale else 3
    if stream is None:
        stream = len(scan.files) * h * w * channels > MEMORY_BYTES
    read = _probed if stream else _decoded
    images, labels = read(scan, h, w, channels, skipped)
    counts = np.bincount(labels, minlength=len(class_names))
    unreadable = [name for name, c in zip(class_names, counts, strict=True) if c == 0]
    if unreadable:
        raise _empty_classes_error(root, unreadable, "no readable images")

    train, test = stratified_split(labels, test_split, seed, len(class_names))
    dataset = LoadedDataset(name=f"{FOLDER_PREFIX}{root}", x_train=images[train],
                            y_train=labels[train], x_test=images[test], y_test=labels[test],
                            class_names=class_names, source=str(root.resolve()))
    return FolderDataset(dataset=dataset, skipped=skipped)


def _label_dtype(classes: int) -> type:
    return np.uint8 if classes <= 256 else np.int32


def _decoded(scan: FolderScan, h: int, w: int, channels: int,
             skipped: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Every readable file's pixels in memory, and their labels; the others to `skipped`."""
    shape = (h, w) if channels == 1 else (h, w, 3)
    images = np.empty((len(scan.files), *shape), dtype=np.uint8)
    labels = np.empty(len(scan.files), dtype=_label_dtype(len(scan.class_names)))
    n = 0
    for path, label in zip(scan.files, scan.labels, strict=True):
        try:
            images[n] = decode_for_model(path, h, w, channels).reshape(shape)
        except ImageError as e:
            skipped.append((path, reason(e, path)))
            continue
        labels[n] = label
        n += 1
    return images[:n], labels[:n]


def _probed(scan: FolderScan, h: int, w: int, channels: int,
            skipped: list[tuple[str, str]]) -> tuple[ImageFiles, np.ndarray]:
    """The files whose headers pass `probe_image`, as `ImageFiles`, and their labels."""
    keep: list[str] = []
    labels: list[int] = []
    for path, label in zip(scan.files, scan.labels, strict=True):
        try:
            probe_image(path, min_size=(h, w))
        except ImageError as e:
            skipped.append((path, reason(e, path)))
            continue
        keep.append(path)
        labels.append(label)
    return (ImageFiles(keep, h, w, channels),
            np.asarray(labels, dtype=_label_dtype(len(scan.class_names))))
