"""What runs a network's forward pass for answers: a TensorFlow graph, or LiteRT.

Both are functions float32 N×H×W×C in [0, 1] → float32 logits (N, classes), called by
`TrainedModel.logits` only (`tfcnn.models.trained`), which owns batching and the softmax.

- `graph_logits`: the network as one concrete function, traced once for any batch size
  (a plain `model(x)` call pays Keras's eager overhead, ~3 ms, on every call).
- `LiteRTLogits`: the network converted to a TFLite flatbuffer (`network_tflite`) and run
  by the LiteRT interpreter. Measured on this 2-core machine (docs/benchmarks.md, "Serving
  speed"): one image ~0.1 ms against ~3 ms through TensorFlow's concrete function, whose
  per-call overhead dominates the small batches a server sees. `checked_litert` converts,
  then compares with the graph on a probe batch, and keeps LiteRT only within `TOLERANCE`.

An interpreter has a fixed input shape and resizing it re-plans its memory, so there is one
interpreter per batch size seen (at most `LITERT_CHUNK`; larger batches run in chunks). An
interpreter is not thread-safe: one lock serialises the calls.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

Logits = Callable[[np.ndarray], np.ndarray]
LITERT_CHUNK = 64  # images per interpreter call: bounds memory (and interpreters)
TOLERANCE = 1e-4  # largest logit difference from the graph accepted for LiteRT


def graph_logits(network: Any, image_shape: tuple[int, int, int]) -> Logits:
    """The network as a TensorFlow concrete function (traced once, any batch size)."""
    import tensorflow as tf

    graph = tf.function(lambda x: network(x, training=False), input_signature=[
        tf.TensorSpec((None, *image_shape), tf.float32)]).get_concrete_function()

    def run(batch: np.ndarray) -> np.ndarray:
        return graph(tf.constant(batch, tf.float32)).numpy().astype(np.float32, copy=False)

    return run


def tflite_from_archive(add_endpoints: Callable[[Any], None], tracked: Any,
                        signature: str, quantize: str = "none",
                        uint8_input: bool = False) -> bytes:
    """A TFLite flatbuffer of one signature, converted through a temporary SavedModel (the
    converter's recommended source). `add_endpoints(archive)` adds the signature(s) to a
    `keras.export.ExportArchive` tracking `tracked`. `quantize`: "none", "dynamic" (int8
    weights, float maths) or "float16"."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(tracked)
    add_endpoints(archive)
    with tempfile.TemporaryDirectory(prefix="tfcnn-tflite-") as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[signature])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def network_tflite(network: Any, image_shape: tuple[int, int, int]) -> bytes:
    """The network (float32 images → logits) as a float32 TFLite flatbuffer."""
    import tensorflow as tf

    def endpoints(archive: Any) -> None:
        archive.add_endpoint("logits", lambda images: {"logits": network(images,
                                                                          training=False)},
                             input_signature=[tf.TensorSpec((None, *image_shape), tf.float32,
                                                            name="images")])

    return tflite_from_archive(endpoints, network, "logits")


class LiteRTLogits:
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

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            interpreter, source, output = self._interpreter(len(batch))
            interpreter.set_tensor(source, np.ascontiguousarray(batch, dtype=np.float32))
            interpreter.invoke()
            return interpreter.get_tensor(output).copy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        parts = [self._run(batch[i:i + LITERT_CHUNK])
                 for i in range(0, len(batch), LITERT_CHUNK)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def checked_litert(network: Any, image_shape: tuple[int, int, int],
                   graph: Logits) -> tuple[Logits | None, str]:
    """LiteRT for `network` if it converts and agrees with `graph` on a probe batch:
    (the function, "") or (None, why not)."""
    probe = np.random.default_rng(0).random((4, *image_shape), dtype=np.float32)
    try:
        lite = LiteRTLogits(network_tflite(network, image_shape))
        difference = float(np.abs(lite(probe) - graph(probe)).max())
    except Exception as exc:  # any failure to convert or run: the graph still works
        return None, f"LiteRT unavailable for this model ({type(exc).__name__}: {exc})"
    if not difference <= TOLERANCE:
        return None, f"LiteRT differs from TensorFlow by {difference:.2g} (over {TOLERANCE:g})"
    return lite, ""

