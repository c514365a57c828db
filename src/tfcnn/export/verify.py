"""Running an export with its own runtime, as a client would, to check it against the model.

`verify_export(path, fmt, pixels)` feeds uint8 images at the model's size to the export's
runtime (float32 / 255 for the float inputs); `file_probabilities(path, signature, files)`
feeds image files to a SavedModel as clients of TF Serving do: the file's bytes
(`serving_bytes`) or its decoded pixels at their own size (`serving_uint8`). The benchmark
`benchmarks/export_agreement.py` compares both with `tfcnn predict` on the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError
from tfcnn.export.graphs import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE,
    UINT8_SIGNATURE,
)
from tfcnn.images.prepare import to_unit


def litert_interpreter(path: Path) -> Any:
    """LiteRT's interpreter for a .tflite file (TensorFlow's deprecated one without it)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path))


def _chunks(images: np.ndarray, size: int) -> list[np.ndarray]:
    return [images[i:i + size] for i in range(0, len(images), size)]


def verify_export(path: Path, fmt: str, pixels: np.ndarray, batch_size: int = 500
                  ) -> np.ndarray:
    """float32 probabilities from the export at `path` for uint8 `pixels` [N, H, W, C] at
    the model's size, run by the format's own runtime: Keras (`keras.saving.load_model`),
    TensorFlow (`tf.saved_model.load`, `serving_default`), LiteRT, onnxruntime."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ConfigError(f"pixels: expected uint8 images, got {pixels.dtype}")
    path = Path(path)
    if fmt == "keras":
        import keras

        model = keras.saving.load_model(str(path), compile=False)
        return np.asarray(model.predict(to_unit(pixels), batch_size=batch_size, verbose=0))
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        return np.concatenate([serve(**{INPUT_NAME: tf.constant(to_unit(c))})[OUTPUT_NAME]
                               .numpy() for c in _chunks(pixels, batch_size)])
    if fmt == "tflite":
        runner = litert_interpreter(path).get_signature_runner(SIGNATURE)
        return np.concatenate([runner(**{INPUT_NAME: c})[OUTPUT_NAME]
                               for c in _chunks(pixels, batch_size)])
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: c})[0]
                               for c in _chunks(pixels, batch_size)])
    raise ConfigError(f"format {fmt!r}: expected keras, saved_model, tflite or onnx")


def file_probabilities(saved_model: Path, signature: str, files: list[Path]
                       ) -> tuple[np.ndarray, list[str]]:
    """A SavedModel's (probabilities, labels) for image files, one request per file:
    `serving_bytes` gets the file's bytes; `serving_uint8` its pixels decoded by Pillow at
    their own size (first frame, no resize: what a client holding the image sends)."""
    import tensorflow as tf
    from PIL import Image

    serve = tf.saved_model.load(str(saved_model)).signatures[signature]
    probs, labels = [], []
    for file in files:
        if signature == BYTES_SIGNATURE:
            out = serve(**{BYTES_INPUT: tf.constant([Path(file).read_bytes()])})
        elif signature == UINT8_SIGNATURE:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGBA" if "A" in image.getbands()
                                                  or "transparency" in image.info
                                                  else image.mode if image.mode in ("L", "RGB")
                                                  else "RGB"))
            if pixels.ndim == 2:
                pixels = pixels[..., np.newaxis]
            out = serve(**{INPUT_NAME: tf.constant(pixels[np.newaxis])})
        else:
            raise ConfigError(f"signature {signature!r}: expected {BYTES_SIGNATURE} or "
                              f"{UINT8_SIGNATURE}")
        probs.append(out[OUTPUT_NAME].numpy()[0])
        labels.append(out["labels"].numpy()[0].decode("utf-8"))
    return np.stack(probs), labels
