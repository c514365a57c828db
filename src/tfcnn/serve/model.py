"""The model being served: what the APIs say about it, its batch predict function, and the
checks that turn a client's numbers or image file into a batch it can take.

The predict function is a `tf.function` with a batch-free input signature, traced once at
start (the warm-up call), so batches of any size run as one graph call instead of Keras's
eager per-layer dispatch, and the first client does not pay for the tracing.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.images.preprocess import PREPROCESSINGS, load_image, prepare
from tfcnn.serve.http import ApiError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CHUNK = 256  # images per graph call: bounds memory for a request with thousands of images
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def default_name(model_file: Path) -> str:
    """The run directory's name for RUN_DIR/model.keras, else the file's stem, made URL-safe."""
    stem = model_file.parent.name if model_file.name == "model.keras" else model_file.stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip("._-")[:128]
    return name or "model"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"--name: {name!r} is not a model name (expected 1-128 letters, "
                          "digits, '.', '_' or '-', starting with a letter or digit)")
    return name


@dataclass(frozen=True)
class ServedModel:
    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    preprocessing: str
    dataset: str
    predict: Callable[[np.ndarray], np.ndarray]  # N×H×W×C float32 → N×classes float32
    version: str = "1"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def shape_text(self) -> str:
        h, w, c = self.image_shape
        return f"{h}×{w}×{c}" + (f" or {h}×{w}" if c == 1 else "")

    def as_batch(self, values: Any, where: str) -> np.ndarray:
        """`values` (nested lists or an array) as an N×H×W×C float32 batch, N ≥ 1, or a 400."""
        try:
            batch = np.asarray(values, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"{where}: images of different shapes or nested unevenly "
                                f"(expected each {self.shape_text()})") from exc
        if batch.ndim == 3 and self.image_shape[2] == 1:
            batch = batch[..., np.newaxis]
        if batch.ndim != 4 or batch.shape[1:] != self.image_shape:
            got = "×".join(str(n) for n in batch.shape[1:]) or "a flat list"
            raise ApiError(400, f"{where}: expected images of shape {self.shape_text()}, "
                                f"got {got}")
        if len(batch) == 0:
            raise ApiError(400, f"{where}: no images")
        if not np.isfinite(batch).all():
            raise ApiError(400, f"{where}: NaN or infinite values")
        if batch.min() < 0 or batch.max() > 1:
            raise ApiError(400, f"{where}: values outside [0, 1] (scale 0-255 pixels by "
                                "1/255)")
        return batch

    def prepare_upload(self, data: bytes, filename: str) -> np.ndarray:
        """An uploaded image file as the model's H×W×C input (as `tfcnn predict` makes it)."""
        if not data:
            raise ApiError(400, f"{filename}: empty file (0 bytes)")
        try:
            image = load_image(io.BytesIO(data), name=filename)
            return prepare(image, self.preprocessing, self.image_shape)
        except TfcnnError as exc:
            raise ApiError(400, str(exc)) from exc
        except (OSError, ValueError) as exc:  # e.g. a mode Pillow cannot convert
            raise ApiError(400, f"{filename}: cannot convert image ({exc})") from exc


def png_data_url(image: np.ndarray) -> str:
    """An H×W×C image in [0, 1] as a PNG data URL (the page shows what the model saw)."""
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def from_keras(model: Any, name: str) -> ServedModel:
    """Wrap a tfcnn Keras model (from `load_model`) for serving; runs it once to warm up."""
    import tensorflow as tf

    from tfcnn.models.network import probabilities
    from tfcnn.predict import class_names

    preprocessing = getattr(model, "preprocessing", "scale")
    if preprocessing not in PREPROCESSINGS:
        raise ConfigError(f"model: unknown preprocessing {preprocessing!r}")
    shape = tuple(int(n) for n in getattr(model, "image_shape", ()))
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ConfigError(f"model: input shape {shape} is not H×W×1 or H×W×3")
    image_shape = (shape[0], shape[1], shape[2])
    graph = tf.function(lambda x: probabilities(model, x), input_signature=[
        tf.TensorSpec((None, *image_shape), tf.float32)])

    def predict(batch: np.ndarray) -> np.ndarray:
        parts = [graph(batch[i:i + CHUNK]).numpy() for i in range(0, len(batch), CHUNK)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    n_classes = predict(np.zeros((1, *image_shape), np.float32)).shape[1]
    return ServedModel(name=check_name(name), class_names=tuple(class_names(model, n_classes)),
                       image_shape=image_shape, preprocessing=preprocessing,
                       dataset=str(getattr(model, "dataset", "")), predict=predict)
