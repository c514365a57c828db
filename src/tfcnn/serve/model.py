"""The model being served: a `TrainedModel` (`tfcnn.load`'s `Classifier`) with the name and
version the APIs give it, and the checks that turn a client's image file into a batch.

Answers come from the model's one inference path, `TrainedModel.predict_proba`, run by
LiteRT when its answers agree with TensorFlow's (`tfcnn.models.runtimes`), else by the
TensorFlow graph; either is ready before the first client comes.

Image uploads are decoded by `tfcnn.images` (which refuses decompression bombs with
`ImageTooLarge`: a 413 here); `decode_slots` bounds how many decode at once, so concurrent
large uploads cannot multiply the memory one decode may take.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tfcnn.core.errors import ConfigError, TfcnnError
from tfcnn.images.decode import ImageTooLarge
from tfcnn.images.prepare import model_input
from tfcnn.serve.http import ApiError
from tfcnn.serve.inputs import INPUT_NAME, OUTPUT_NAME, InputSpec

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ServedModel", "check_name", "default_name",
           "png_data_url", "serve_model"]

log = logging.getLogger("tfcnn.serve")
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
    """A trained model as the server names it; everything else is the model's own."""

    model: Any  # a TrainedModel (tfcnn.Classifier): the one inference path
    name: str
    version: str = "1"
    decode_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(DECODE_SLOTS), compare=False,
        repr=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.model.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.image_shape

    @property
    def preprocessing(self) -> str:
        """"mnist" (digit models: uploads are made MNIST-style) or "scale"."""
        return str(self.model.preprocessor.tag)

    @property
    def dataset(self) -> str:
        return self.model.dataset

    @property
    def runtime(self) -> str:
        """What runs the network: "litert" or "graph" (TensorFlow)."""
        return self.model.runtime

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.image_shape)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, classes) calibrated probabilities of an N×H×W×C float32 batch."""
        return self.model.predict_proba(batch).astype(np.float32)

    def answer_rows(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, classes + 1): `predict`'s probabilities, then a column that is 1
        where the image is "unknown" (unlike the training images) and 0 elsewhere; one
        array, so the micro-batcher splits it by rows like any other. `split` takes it
        apart."""
        answers = self.model.answer(batch)
        return np.concatenate([answers.probabilities.astype(np.float32),
                               answers.unknown.astype(np.float32)[:, None]], axis=1)

    @staticmethod
    def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict`'s rows as (float32 probabilities (N, classes), bool unknown (N,))."""
        return rows[:, :-1], rows[:, -1] > 0.5

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
                return model_input(io.BytesIO(data), self.model.prepare, self.image_shape,
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


def serve_model(model: Any, name: str, runtime: str = "litert") -> ServedModel:
    """`model` (a `TrainedModel`, e.g. `tfcnn.load(...)`, or a tfcnn Keras network) served as
    `name`, ready to answer: LiteRT runs it when that agrees with TensorFlow
    (`runtime="litert"`), else the graph (`runtime="graph"` always), and the first call is
    made now, not by the first client."""
    from tfcnn.models.trained import TrainedModel

    if not isinstance(model, TrainedModel):
        model = TrainedModel(model)
    chosen = model.use_runtime(runtime)
    if runtime == "litert" and chosen != "litert":
        log.warning("%s; running TensorFlow", model.runtime_note)
    served = ServedModel(model=model, name=check_name(name))
    served.answer_rows(np.zeros((1, *served.image_shape), np.float32))  # warm up
    return served
