"""What to predict: the command's PATH arguments as files, and any API input as model arrays.

`expand_inputs` turns `tfcnn predict`'s PATH arguments into a list of files (no TensorFlow,
so the CLI checks them before TensorFlow loads); `expected_labels` gives the class folder of
each file found in a folder's sub-folders (the layout tfcnn trains on). `model_inputs`
turns what `Classifier.predict` accepts (file paths, Pillow images, numpy arrays, or a list
of them) into the model's float32 N×H×W×C batch through the one image decoder
(`tfcnn.images`), so a file gives the same pixels here as in training and serving.
"""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.core.errors import ConfigError, ImageError
from tfcnn.images.decode import FORMATS_TEXT
from tfcnn.images.prepare import image_from_array, model_input, prepare, to_unit

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp"})
_GLOB_CHARS = frozenset("*?[")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _is_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def _folder_images(folder: Path, skipped: list[Path] | None = None) -> list[Path]:
    """The folder's image files, then those of its sub-folders (sorted, depth first; names
    starting with "." and symlinked folders are left out, so a link loop cannot recurse).
    Other files (not named as images) are added to `skipped` when it is given."""
    entries = sorted(folder.iterdir())
    found = [p for p in entries if _is_image_name(p) and p.is_file()]
    if skipped is not None:
        skipped.extend(p for p in entries if p.is_file() and not _is_image_name(p)
                       and not p.name.startswith("."))
    for sub in entries:
        if sub.is_dir() and not sub.is_symlink() and not sub.name.startswith("."):
            found.extend(_folder_images(sub, skipped))
    return found


def _expand_one(text: str, skipped: list[Path] | None = None) -> list[Path]:
    path = Path(text)
    if path.is_dir():
        return _folder_images(path, skipped)
    if path.exists() or not _is_glob(text):
        return [path] if path.exists() else []
    found: list[Path] = []
    for match in sorted(glob.glob(text, recursive=True)):
        candidate = Path(match)
        if candidate.is_dir():
            found.extend(_folder_images(candidate))
        elif _is_image_name(candidate) and candidate.is_file():
            found.append(candidate)
    return found


def expand_inputs(paths: list[str], skipped: list[Path] | None = None) -> list[str | Path]:
    """The files to predict, in the order given: each PATH a file, a folder or a glob.

    A file is taken whatever its name (decoding decides); a folder gives its image files
    (PNG, JPEG, BMP, GIF, WebP by suffix, sorted), then those of its sub-folders, e.g. one
    sub-folder per class as tfcnn trains on; a glob gives its sorted matches, image files
    only, `**` spanning folders. A file found twice is kept once. A PATH matching nothing
    stays in the list as its `str` so `predict_files` reports it; found files are `Path`s.
    Files inside folders that are not named as images are left out, and added to
    `skipped` when given. Raises `ConfigError` when no PATH gives any file.

    Example:
        >>> [path.name for path in expand_inputs([digit_folder])]
        ['2.png', '7.png']
    """
    expanded: list[str | Path] = []
    seen: set[Path] = set()
    for text in paths:
        found = _expand_one(str(text), skipped)
        if not found:
            expanded.append(str(text))
        for path in found:
            if path not in seen:
                seen.add(path)
                expanded.append(path)
    if not any(isinstance(entry, Path) for entry in expanded):
        shown = ", ".join(str(p) for p in paths[:3]) + (
            f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise ConfigError(f"no image files found in {shown or 'no paths'} (expected "
                          f"{FORMATS_TEXT} files, folders holding them, or glob patterns)")
    return expanded


def expected_labels(paths: list[str], files: list[str | Path]) -> dict[Path, str]:
    """For files found inside a sub-folder of a folder PATH: that first sub-folder's name
    (its class, as in `--dataset folder:PATH`); other files have no expected label."""
    roots = [Path(p) for p in paths if Path(p).is_dir()]
    expected: dict[Path, str] = {}
    for file in files:
        if not isinstance(file, Path):
            continue
        for root in roots:
            try:
                parts = file.relative_to(root).parts
            except ValueError:
                continue
            if len(parts) > 1:
                expected[file] = parts[0]
                break
    return expected


def missing_reason(entry: str | Path) -> str:
    """Why `entry` gives no image: a folder without images, a pattern matching nothing, a
    FIFO, device or socket (never opened: it could block forever), or no such file."""
    text = str(entry)
    path = Path(text)
    if path.is_dir():
        return f"{text}: folder holds no {FORMATS_TEXT} files"
    if _is_glob(text) and not path.exists():
        return f"{text}: pattern matches no image files"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"{text}: no such file"
    if not stat.S_ISREG(mode):
        return f"{text}: not a regular file (a FIFO, device or socket); expected an image file"
    return f"{text}: cannot be read"


def file_input(entry: str | Path, step: str | None, image_shape: tuple[int, int, int],
               preprocess: bool = True) -> np.ndarray:
    """One file's H×W×C float32 model input; `ImageError` naming it if it has none.
    `step`: the model's host-side preparation ("mnist" or None)."""
    path = Path(entry)
    if not path.is_file():
        raise ImageError(missing_reason(entry))
    return model_input(path, step, image_shape, preprocess, name=str(entry))


def _is_batch(array: np.ndarray) -> bool:
    """N×H×W×C, or N×H×W (grey images, as `tfcnn.datasets.load` gives them): a 3-D array
    whose last axis cannot be channels (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA) is a
    stack of grey images."""
    return array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4))


def _path_items(path: str | os.PathLike[str]) -> list[Any]:
    """A folder (or a glob matching no file) as its image files, as `tfcnn predict`
    expands it; any other path as itself (decoding decides)."""
    text = os.fspath(path)
    if Path(text).is_dir() or (not Path(text).exists() and _is_glob(text)):
        found = _expand_one(text)
        if not found:
            raise ImageError(missing_reason(text))
        return [str(p) for p in found]
    return [text]


def _items(inputs: Any) -> list[Any]:
    if isinstance(inputs, str | os.PathLike):
        return _path_items(inputs)
    if isinstance(inputs, Image.Image):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        if _is_batch(inputs):
            return list(inputs)
        return [inputs]
    if isinstance(inputs, list | tuple):
        items: list[Any] = []
        for item in inputs:
            if isinstance(item, np.ndarray) and _is_batch(item):
                items.extend(list(item))
            elif isinstance(item, str | os.PathLike):
                items.extend(_path_items(item))
            else:
                items.append(item)
        if not items:
            raise ImageError("inputs: empty list (expected at least one image)")
        return items
    raise ImageError(f"inputs: expected a file path, a Pillow image, a numpy array or a list "
                     f"of them, got {type(inputs).__name__}")


def _array_input(array: np.ndarray, name: str, step: str | None,
                 image_shape: tuple[int, int, int], preprocess: bool) -> np.ndarray:
    image = image_from_array(array, name)  # checks shape, dtype and range
    height, width, channels = image_shape
    values = array if array.ndim == 3 else array[..., np.newaxis]
    if not preprocess and values.shape == (height, width, channels):
        # Already the model's input: fed as it is (uint8 scaled as training scales it).
        if values.dtype == np.uint8:
            return to_unit(values)
        return values.astype(np.float32)
    return prepare(image, step, image_shape, preprocess)


def model_inputs(inputs: Any, step: str | None, image_shape: tuple[int, int, int],
                 preprocess: bool = True) -> tuple[np.ndarray, list[str]]:
    """`inputs` as the model's float32 N×H×W×C batch, with a source name for each image.

    `inputs`: a file path, a folder (its image files, as `tfcnn predict` finds them), a
    Pillow image, a numpy array (H×W, H×W×C with C 1-4, N×H×W×C, or N×H×W when the last
    axis cannot be channels; uint8 0-255 or float 0-1), or a list of these. Files and
    images are prepared as the model was trained (`step`: "mnist" for digits, or None);
    with `preprocess=False` only resized, and an array already of the model's input shape
    is fed unchanged. An empty batch array (N = 0) gives an empty batch. Raises
    `ImageError` (a `TfcnnError`) naming the first input that cannot be used.
    """
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4 and not len(inputs):
        return np.zeros((0, *image_shape), np.float32), []
    arrays, sources = [], []
    for index, item in enumerate(_items(inputs)):
        if isinstance(item, str | os.PathLike):
            source = os.fspath(item)
            arrays.append(file_input(source, step, image_shape, preprocess))
        elif isinstance(item, Image.Image):
            source = f"image[{index}]"
            try:
                arrays.append(prepare(item, step, image_shape, preprocess))
            except (OSError, ValueError) as exc:
                raise ImageError(f"{source}: cannot convert image ({exc})") from exc
        elif isinstance(item, np.ndarray):
            source = f"array[{index}]"
            arrays.append(_array_input(item, source, step, image_shape, preprocess))
        else:
            raise ImageError(f"inputs[{index}]: expected a file path, a Pillow image or a numpy "
                             f"array, got {type(item).__name__}")
        sources.append(source)
    return np.stack(arrays).astype(np.float32, copy=False), sources
