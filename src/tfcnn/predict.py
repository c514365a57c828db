"""`tfcnn predict`: image files, folders and glob patterns → class predictions.

`expand_inputs` turns the command's PATH arguments into a list of files (no TensorFlow, so
the CLI can check them before TensorFlow loads); `predict_files` decodes and prepares each
image (`tfcnn.images.preprocess`) and runs the model on batches; `format_table` and `format_csv`
render the results. A file that cannot be read becomes an error entry, never a failed run.
"""

from __future__ import annotations

import csv
import glob
import io
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.core.prediction import Prediction
from tfcnn.evaluation.tta import tta_probabilities
from tfcnn.images.preprocess import FORMATS_TEXT, ImageError, load_image, prepare

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp"})
BATCH_SIZE = 256  # images per inference call: bounded memory, few calls
_GLOB_CHARS = frozenset("*?[")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _is_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image_name(p) and p.is_file())


def _expand_one(text: str) -> list[Path]:
    path = Path(text)
    if path.is_dir():
        return _folder_images(path)
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


def expand_inputs(paths: list[str]) -> list[str | Path]:
    """The files to predict, in the order given: each PATH a file, a folder or a glob.

    A file is taken whatever its name (decoding decides); a folder gives its image files
    (PNG, JPEG, BMP, GIF, WebP by suffix, sorted, not its sub-folders: use a glob such as
    'dir/**/*.png' for those); a glob gives its sorted matches, image files only, `**`
    spanning folders. A file found twice is kept once. A PATH matching nothing stays in the
    list as its `str` so `predict_files` reports it; found files are `Path`s. Raises
    `ConfigError` when no PATH gives any file.
    """
    expanded: list[str | Path] = []
    seen: set[Path] = set()
    for text in paths:
        found = _expand_one(str(text))
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


def _missing_reason(entry: str | Path) -> str:
    text = str(entry)
    path = Path(text)
    if path.is_dir():
        return f"{text}: folder holds no {FORMATS_TEXT} files"
    if _is_glob(text) and not path.exists():
        return f"{text}: pattern matches no image files"
    return f"{text}: no such file"


def _load(entry: str | Path, preprocessing: str, image_shape: tuple[int, int, int],
          preprocess: bool) -> np.ndarray:
    path = Path(entry)
    if not path.is_file():
        raise ImageError(_missing_reason(entry))
    image = load_image(path, name=str(entry))
    try:
        return prepare(image, preprocessing, image_shape, preprocess)
    except (OSError, ValueError) as exc:  # e.g. a mode Pillow cannot convert
        raise ImageError(f"{entry}: cannot convert image ({exc})") from exc


def class_names(model: Any, n_classes: int) -> list[str]:
    """The model's class names, or "0", "1", ... when it has none."""
    return list(getattr(model, "class_names", ())) or [str(i) for i in range(n_classes)]


def prediction(file: str, probs: Any, names: list[str], top_k: int) -> dict[str, Any]:
    """The `predict --json` object for one image's class probabilities (`Prediction`)."""
    return Prediction.from_probabilities(probs, names, top_k, source=file).to_dict()


def predict_files(model_file: Path, paths: list[str | Path], *, top_k: int = 3,
                  preprocess: bool = True, tta: bool = False) -> list[dict[str, Any]]:
    """One result per path, in order: the prediction, or `{"file", "error"}`.

    A prediction is `{"file", "label", "index", "probability", "top_k": [{"label",
    "probability"}, ...]}` with `top_k` capped at the number of classes. Images are prepared
    as the model was trained (its `preprocessing`; `preprocess=False`: resize only) and run
    in batches of `BATCH_SIZE`. With `tta`, the probabilities are averaged over each prepared
    image and its copies shifted by one pixel (`tfcnn.evaluation.tta.DEFAULT_SHIFTS`, black
    filled in),    and their mirror images too when the model's run trained with --hflip.
    """
    from tfcnn.models.loader import load_checked_model
    from tfcnn.models.network import probabilities

    if top_k < 1:
        raise ConfigError(f"top_k: expected a positive integer, got {top_k}")
    model = load_checked_model(model_file)
    preprocessing = getattr(model, "preprocessing", "scale")
    image_shape = tuple(int(n) for n in model.image_shape)
    results: list[dict[str, Any] | None] = [None] * len(paths)
    pending: list[tuple[int, np.ndarray]] = []
    mirror = False
    if tta:
        from tfcnn.evaluation.ensemble import tta_mirrors

        mirror = tta_mirrors(Path(model_file), model)

    def predict_batch(batch: np.ndarray) -> np.ndarray:
        return np.asarray(probabilities(model, batch), dtype=np.float64)

    def run_batch() -> None:
        batch = np.stack([array for _, array in pending])
        probs = (tta_probabilities(predict_batch, batch, mirror=mirror) if tta
                 else predict_batch(batch))
        names = class_names(model, probs.shape[1])
        for (index, _), row in zip(pending, probs, strict=True):
            results[index] = prediction(str(paths[index]), row, names, top_k)
        pending.clear()

    for index, entry in enumerate(paths):
        try:
            pending.append((index, _load(entry, preprocessing, image_shape, preprocess)))
        except TfcnnError as exc:
            results[index] = {"file": str(entry), "error": str(exc)}
        if len(pending) == BATCH_SIZE:
            run_batch()
    if pending:
        run_batch()
    return [r for r in results if r is not None]


def _top_text(result: dict[str, Any]) -> str:
    return "  ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in result["top_k"])


def format_table(results: list[dict[str, Any]]) -> str:
    """An aligned table, one row per file (errors in place of the prediction), and a count."""
    k = max((len(r["top_k"]) for r in results if "error" not in r), default=0)
    header = ("file", "label", "probability", f"top {k}" if k else "")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["file"], "error", "", r["error"]))
        else:
            rows.append((r["file"], str(r["label"]), f"{100 * r['probability']:.1f}%",
                         _top_text(r)))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]

    def line(row: tuple[str, ...]) -> str:
        return (f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  "
                f"{row[3]}").rstrip()

    failed = sum("error" in r for r in results)
    summary = f"{len(results) - failed} predicted" + (f", {failed} failed" if failed else "")
    return "\n".join([line(header), *(line(row) for row in rows), summary])


def format_csv(results: list[dict[str, Any]]) -> str:
    """CSV with a header: file,label,index,probability, then label_i,probability_i for each
    of the top k, then error (empty for a prediction; the other cells empty for an error)."""
    k = max((len(r["top_k"]) for r in results if "error" not in r), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    pairs = [name for i in range(1, k + 1) for name in (f"label_{i}", f"probability_{i}")]
    writer.writerow(["file", "label", "index", "probability", *pairs, "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["file"], "", "", "", *[""] * (2 * k), r["error"]])
            continue
        tops = [cell for t in r["top_k"] for cell in (t["label"], t["probability"])]
        tops += [""] * (2 * k - len(tops))
        writer.writerow([r["file"], r["label"], r["index"], r["probability"], *tops, ""])
    return out.getvalue()
