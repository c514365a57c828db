"""How the served model runs a batch: the LiteRT interpreter, else a TensorFlow graph.

Measured on this 2-core machine (docs/benchmarks.md, "Serving speed"), the `--preset fast`
network under load: one image takes ~0.1 ms in LiteRT (XNNPACK, one thread) against ~3 ms
through TensorFlow's concrete function, whose per-call overhead dominates the small
batches a server sees; 8 images ~0.7 ms against ~6 ms. So the model is converted to
TFLite once at start (`tfcnn.export`'s converter, float32, no quantisation), and checked:
if the conversion fails or its answers differ from Keras's by more than `TOLERANCE` on a
probe batch, the server runs the TensorFlow graph instead and says why.

An interpreter has a fixed input shape and resizing it re-plans its memory, so there is
one interpreter per batch size seen (at most `CHUNK`; larger requests run in chunks). An
interpreter is not thread-safe: one lock serialises the calls (the batcher makes one at a
time anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("tfcnn.serve")

Predict = Callable[[np.ndarray], np.ndarray]
CHUNK = 64  # images per model call: bounds memory (and interpreters) for large requests
TOLERANCE = 1e-5  # largest probability difference from Keras accepted for LiteRT


def graph_predict(model: Any, image_shape: tuple[int, int, int]) -> Predict:
    """The model as a TensorFlow concrete function (traced once, any batch size)."""
    import tensorflow as tf

    from tfcnn.models.network import probabilities

    graph = tf.function(lambda x: probabilities(model, x), input_signature=[
        tf.TensorSpec((None, *image_shape), tf.float32)]).get_concrete_function()

    def predict(batch: np.ndarray) -> np.ndarray:
        return graph(batch).numpy()

    return chunked(predict)


class LiteRTPredict:
    """A TFLite flatbuffer run by LiteRT's interpreter, one interpreter per batch size."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self._interpreters: dict[int, tuple[Any, int, int]] = {}
        self._lock = threading.Lock()

    def _interpreter(self, n: int) -> tuple[Any, int, int]:
        if n not in self._interpreters:
            from ai_edge_litert.interpreter import Interpreter

            # One thread: the other core parses requests meanwhile (2 threads measured
            # slower on batches of 8-16 on this machine).
            interpreter = Interpreter(model_content=self.content, num_threads=1)
            source = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(source["index"], [n, *source["shape"][1:]],
                                            strict=True)
            interpreter.allocate_tensors()
            output = interpreter.get_output_details()[0]["index"]
            self._interpreters[n] = (interpreter, source["index"], output)
        return self._interpreters[n]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            interpreter, source, output = self._interpreter(len(batch))
            interpreter.set_tensor(source, np.ascontiguousarray(batch, dtype=np.float32))
            interpreter.invoke()
            return interpreter.get_tensor(output).copy()


def tflite_content(model: Any) -> bytes:
    """The model as a float32 TFLite flatbuffer, through `tfcnn export`'s converter."""
    from tfcnn.export import tflite_bytes

    return tflite_bytes(model)


def chunked(predict: Predict) -> Predict:
    def run(batch: np.ndarray) -> np.ndarray:
        parts = [predict(batch[i:i + CHUNK]) for i in range(0, len(batch), CHUNK)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return run


def best_predict(model: Any, image_shape: tuple[int, int, int]) -> tuple[Predict, str]:
    """The fastest way to run `model` that agrees with it: (predict, "litert" or "graph")."""
    graph = graph_predict(model, image_shape)
    probe = np.random.default_rng(0).random((4, *image_shape), dtype=np.float32)
    expected = graph(probe)
    try:
        lite = chunked(LiteRTPredict(tflite_content(model)))
        difference = float(np.abs(lite(probe) - expected).max())
    except Exception as exc:  # any failure to convert or run: the graph still works
        log.warning("LiteRT unavailable for this model (%s: %s); running TensorFlow",
                    type(exc).__name__, exc)
        return graph, "graph"
    if not difference <= TOLERANCE:
        log.warning("LiteRT differs from Keras by %.2g (over %g); running TensorFlow",
                    difference, TOLERANCE)
        return graph, "graph"
    return lite, "litert"
