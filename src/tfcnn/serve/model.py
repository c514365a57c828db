"""The model being served: what the APIs say about it, its batch predict function, and the
checks that turn a client's numbers or image file into a batch it can take.

The predict function runs the model with LiteRT when its answers agree with Keras's, else
as a TensorFlow graph (`serve.runtime`); either is ready before the first client comes.

Image uploads are decoded by `tfcnn.images` (which refuses decompression bombs with
`ImageTooLarge`: a 413 here); `decode_slots` bounds how many decode at once, so concurrent
large uploads cannot multiply the memory one decode may take.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.images.decode import ImageTooLarge
from tfcnn.images.prepare import PREPROCESSINGS, model_input
from tfcnn.serve.http import ApiError
from tfcnn.serve.inputs import INPUT_NAME, OUTPUT_NAME, InputSpec

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ServedModel", "check_name", "default_name",
           "from_keras", "png_data_url"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Uploads decoding at once: one per core. Each may take up to the decoder's cap
# (tfcnn.images.decode.MAX_DECODE_BYTES) plus its conversion; more at once only queue.
DECODE_SLOTS = max(1, min(4, os.cpu_count() or 1))


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
    keras_model: Any = None  # the Keras model `predict` runs, when served from one
    runtime: str = "python"  # what runs `predict`: "litert", "graph" (TensorFlow) or else
    decode_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(DECODE_SLOTS), compare=False,
        repr=False)

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.image_shape)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def shape_text(self) -> str:
        return self.spec.shape_text()

    def as_batch(self, values: Any, where: str) -> np.ndarray:
        """`values` (nested lists or an array) as an N×H×W×C float32 batch, N ≥ 1, or a 400."""
        return self.spec.as_batch(values, where)

    def prepare_upload(self, data: bytes, filename: str) -> np.ndarray:
        """An uploaded image file as the model's H×W×C input (as `tfcnn predict` makes it);
        blocks while `decode_slots` other uploads are decoding. Call it off the event loop."""
        if not data:
            raise ApiError(400, f"{filename}: empty file (0 bytes)")
        try:
            with self.decode_slots:  # the one decoder: training's pixels, bit for bit
                return model_input(io.BytesIO(data), self.preprocessing, self.image_shape,
                                   name=filename)
        except ImageTooLarge as exc:
            raise ApiError(413, str(exc)) from exc
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


def from_keras(model: Any, name: str, runtime: str = "auto") -> ServedModel:
    """Wrap a tfcnn Keras model (from `load_checked_model`) for serving, ready to answer.

    `runtime` "auto" runs it with LiteRT when that agrees with Keras (`serve.runtime`), else
    with a TensorFlow graph; "graph" always uses the graph."""
    from tfcnn.predict.run import class_names
    from tfcnn.serve.runtime import best_predict, graph_predict

    preprocessing = getattr(model, "preprocessing", "scale")
    if preprocessing not in PREPROCESSINGS:
        raise ConfigError(f"model: unknown preprocessing {preprocessing!r}")
    shape = tuple(int(n) for n in getattr(model, "image_shape", ()))
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ConfigError(f"model: input shape {shape} is not H×W×1 or H×W×3")
    image_shape = (shape[0], shape[1], shape[2])
    if runtime == "auto":
        predict, runtime = best_predict(model, image_shape)
    elif runtime == "graph":
        predict = graph_predict(model, image_shape)
    else:
        raise ConfigError(f"runtime: expected 'auto' or 'graph', got {runtime!r}")
    n_classes = predict(np.zeros((1, *image_shape), np.float32)).shape[1]  # warm up
    return ServedModel(name=check_name(name), class_names=tuple(class_names(model, n_classes)),
                       image_shape=image_shape, preprocessing=preprocessing,
                       dataset=str(getattr(model, "dataset", "")), predict=predict,
                       keras_model=model, runtime=runtime)
