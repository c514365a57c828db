"""The one model loader: a run directory or a `.keras` file → a checked tfcnn Keras model.

Every command and API call that reads a trained model (evaluate, predict, explain, export,
serve, ensembles, `tfcnn.load`) goes through `load_checked_model`, so each gets the same
checks and the same one-line errors: a missing file, a file Keras cannot read (corrupt,
truncated, not a zip), a model that is not tfcnn's (no recorded image shape or class
names), an input shape that is not grey or RGB images. A model saved before models carried
their preprocessing loads with the equivalent `Preprocessor` (`tfcnn.models.metadata`); an
unknown old tag makes the file unreadable, said in the same one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfcnn.core.errors import ModelSpecError, RunDirError
from tfcnn.core.rundir import resolve_model_file


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _check_archive(model_file: Path) -> None:
    """A `.keras` file is a zip archive holding config.json: say so plainly when it is not
    (Keras itself answers such a file with a misleading "File not found")."""
    import zipfile

    try:
        with zipfile.ZipFile(model_file) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        why = "not a zip archive" if isinstance(exc, zipfile.BadZipFile) else _why(exc)
        raise RunDirError(f"{model_file}: not a Keras model file ({why}; a .keras file is "
                          "a zip archive saved by Keras)") from None
    if "config.json" not in names:
        raise RunDirError(f"{model_file}: not a Keras model file (a zip archive without "
                          "config.json)")


def load_checked_model(source: str | os.PathLike[str]) -> Any:
    """The tfcnn Keras model of a run directory or `.keras` file, checked.

    Raises `RunDirError` when there is no model or Keras cannot read it, `ModelSpecError`
    when the file holds a model that tfcnn did not train (or a setting it does not know).
    """
    from tfcnn.models.network import load_model

    model_file = resolve_model_file(Path(source))
    _check_archive(model_file)
    try:
        model = load_model(model_file)
    except Exception as exc:  # Keras raises many kinds for a bad file; all mean "unreadable"
        raise RunDirError(f"{model_file}: cannot be loaded as a tfcnn model "
                          f"({_why(exc)})") from None
    if not hasattr(model, "image_shape") or not hasattr(model, "class_names"):
        raise ModelSpecError(f"{model_file}: not a tfcnn model (it records no image shape "
                             "or class names)")
    shape = tuple(int(n) for n in model.image_shape)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ModelSpecError(f"{model_file}: input shape {shape} is not H×W×1 or H×W×3 "
                             "(grey or RGB images)")
    return model
