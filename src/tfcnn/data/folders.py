"""Image-folder datasets (`--dataset folder:PATH`): one sub-folder per class, any image files.

Layout (the torchvision ImageFolder convention)::

    PATH/cat/1.png  PATH/cat/photos/2.jpg  PATH/dog/a.bmp  ...

- Classes are PATH's sub-folders, sorted by plain (case-sensitive, code point) string order,
  so "B" sorts before "a"; label i is the i-th name. At least 2 classes are needed.
- Every file under a class folder, in nested folders too, is tried as an image: content decides,
  not the extension. Names starting with "." (files and folders) are ignored, and so are files
  directly in PATH. Files Pillow cannot read (not an image, empty, truncated, a decompression
  bomb per `PIL.Image.MAX_IMAGE_PIXELS`) are skipped and returned with the reason; a class with
  no readable image is an error.
- Each image: first frame only (GIF, TIFF), EXIF orientation applied, transparency composited
  on white, 16-bit samples scaled to 8 bits, converted to L (grayscale) or RGB, then resized to
  exactly `image_size` (H, W) with Pillow's BILINEAR filter, which Pillow antialiases when
  downscaling (torchvision's Resize((h, w)) default); the aspect ratio is not kept.
  `read_image` (a file) and `image_to_array` (an opened image) are that step alone, for
  prediction to match training; `read_image` also lets a JPEG decode at reduced scale.
- The split is stratified and seeded: each class holds out round(val_split * count) images
  (halves round up), at least 1 when it has 2 or more and val_split > 0, and never all of them.
  The held-out images become x_test/y_test; with val_split 0 those are empty (0, H, W[, 3]) and
  training has no test metrics. Both parts are in a seeded random order, so `x_train[:n]` is a
  fair sample across classes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.split import stratified_split

FOLDER_PREFIX = "folder:"
MAX_SIDE = 4096  # per image side; a typo like 2800 would otherwise ask for tens of GB
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class FolderDataset:
    """A loaded image folder and the files that could not be read, as (path, reason)."""

    dataset: LoadedDataset  # name "folder:<PATH as given>", source the resolved path
    skipped: list[tuple[str, str]]


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


def _check_options(image_size: object, val_split: object, seed: object) -> None:
    if not (isinstance(image_size, tuple) and len(image_size) == 2
            and all(_is_int(s) and 1 <= s <= MAX_SIDE for s in image_size)):
        raise ConfigError(f"--image-size {image_size!r}: height and width must be whole "
                          f"numbers from 1 to {MAX_SIDE}")
    if not (isinstance(val_split, Real) and not isinstance(val_split, bool)
            and 0 <= val_split < 1):
        raise ConfigError(f"--val-split {val_split!r}: must be a fraction in [0, 1), e.g. 0.1")
    if not _is_int(seed):
        raise ConfigError(f"--seed {seed!r}: the split needs a whole-number seed")


def _visible(entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return _visible(list(it))
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list ({e.strerror or e})") from e


def _class_files(folder: Path, seen: set[Path]) -> list[str]:
    """Files under a class folder, sorted, nested folders in place; symlink loops cut."""
    real = folder.resolve()
    if real in seen:
        return []
    seen.add(real)
    files: list[str] = []
    for entry in _scan(folder):
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False  # a broken entry; opening it as a file reports why
        if is_dir:
            files.extend(_class_files(Path(entry.path), seen))
        else:
            files.append(entry.path)
    return files


def _empty_classes_error(root: Path, names: list[str], why: str) -> DatasetError:
    if len(names) == 1:
        return DatasetError(f"{root / names[0]}: class folder has {why}; each class needs at "
                            "least one image (remove the folder or add images)")
    return DatasetError(f"{root}: class folders {', '.join(names)} have {why}; each class "
                        "needs at least one image")


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _to_8bit(im: Image.Image) -> Image.Image:
    # Pillow's convert clips 16-bit samples to 255 instead of scaling; scale them ourselves.
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def image_to_array(im: Image.Image, image_size: tuple[int, int] = (28, 28), *,
                   grayscale: bool = True) -> np.ndarray:
    """One loaded image -> uint8 (H, W) when `grayscale`, else (H, W, 3), as training sees it."""
    im = ImageOps.exif_transpose(im)
    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if has_alpha:
        im = _composite_on_white(im)
    elif im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    target = "L" if grayscale else "RGB"
    if im.mode != target:
        if im.mode not in ("1", "L", "P", "RGB"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV: via RGB for a known path to L
        im = im.convert(target)
    height, width = image_size
    if im.size != (width, height):
        im = im.resize((width, height), RESAMPLE)
    return np.asarray(im, dtype=np.uint8)


def read_image(source: str | os.PathLike[str] | IO[bytes], image_size: tuple[int, int] = (28, 28),
               *, grayscale: bool = True) -> np.ndarray:
    """Open, decode and convert one image file exactly as the folder loader does.

    Raises whatever Pillow raises for a file it cannot read.
    """
    with Image.open(source) as im:
        # A JPEG can decode at 1/2..1/8 scale for free; ask for at least the target size
        # either way round, since EXIF rotation may swap the sides.
        side = max(image_size)
        im.draft("L" if grayscale else "RGB", (side, side))
        im.load()
        return image_to_array(im, image_size, grayscale=grayscale)


def _why_unreadable(path: str, e: Exception) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb ({' '.join(str(e).split())})"
    if isinstance(e, Image.UnidentifiedImageError):
        try:
            if os.path.getsize(path) == 0:
                return "empty file (0 bytes)"
        except OSError:
            pass
        return "not an image Pillow can read"
    if isinstance(e, OSError) and e.strerror:
        return f"cannot read ({e.strerror})"
    return f"corrupt or truncated ({type(e).__name__}: {' '.join(str(e).split())})"


def load_image_folder(root: Path, *, image_size: tuple[int, int] = (28, 28),
                      grayscale: bool = True, val_split: float = 0.1,
                      seed: int = 0) -> FolderDataset:
    """Load an image folder into a stratified, seeded train/held-out split (see module doc)."""
    _check_options(image_size, val_split, seed)
    root = Path(root)
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
    class_names = tuple(e.name for e in class_dirs)
    seen: set[Path] = set()
    files = [_class_files(Path(e.path), seen) for e in class_dirs]
    # Fail before the slow part when a class folder is plainly empty.
    no_files = [name for name, f in zip(class_names, files, strict=True) if not f]
    if no_files:
        raise _empty_classes_error(root, no_files, "no files")

    h, w = image_size
    shape = (h, w) if grayscale else (h, w, 3)
    total = sum(len(f) for f in files)
    images = np.empty((total, *shape), dtype=np.uint8)
    labels = np.empty(total, dtype=np.uint8 if len(class_names) <= 256 else np.int32)
    counts, skipped, n = [], [], 0
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; treat both the same way.
        # (catch_warnings is process-wide, one more reason this loop stays single-threaded.)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for label, class_files in enumerate(files):
            start = n
            for path in class_files:
                try:
                    images[n] = read_image(path, image_size, grayscale=grayscale)
                # A damaged file can make a Pillow plugin raise nearly anything (SyntaxError,
                # struct.error, IndexError, ...); any of them means "skip this file".
                except Exception as e:
                    skipped.append((path, _why_unreadable(path, e)))
                    continue
                labels[n] = label
                n += 1
            counts.append(n - start)
    unreadable = [name for name, c in zip(class_names, counts, strict=True) if c == 0]
    if unreadable:
        raise _empty_classes_error(root, unreadable, "no readable images")

    train, test = stratified_split(labels[:n], val_split, seed, len(class_names))
    dataset = LoadedDataset(name=f"{FOLDER_PREFIX}{root}", x_train=images[train],
                            y_train=labels[train], x_test=images[test], y_test=labels[test],
                            class_names=class_names, source=str(root.resolve()))
    return FolderDataset(dataset=dataset, skipped=skipped)
