"""The exported graphs: SavedModel signatures, the TFLite flatbuffer, the ONNX file and the
plain functional `.keras` model (the contract is in `tfcnn.export`'s docstring).

Each is built from the model's own answer ops (`TrainedModel.answer_graph`: preprocessor,
network, temperature, softmax), so every export answers as `predict_proba` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tfcnn.core.errors import ConfigError
from tfcnn.models.runtimes import tflite_from_archive
from tfcnn.models.trained import TrainedModel

INPUT_NAME, OUTPUT_NAME, LABELS_OUTPUT = "images", "probabilities", "labels"
SIGNATURE, BYTES_SIGNATURE, UINT8_SIGNATURE = "serving_default", "serving_bytes", "serving_uint8"
BYTES_INPUT = "image_bytes"  # "_bytes": TF Serving's REST API base64-decodes {"b64": ...}


def _spec(shape: Any, dtype: Any, name: str) -> Any:
    import tensorflow as tf

    return tf.TensorSpec(shape, dtype, name=name)


def _decode_jpeg_reduced(data: Any, side: int) -> Any:
    """A JPEG decoded as tfcnn's host decoder does (`tfcnn.images.decode`): at 1/2, 1/4 or
    1/8 scale (libjpeg's DCT scaling) when both sides stay at least `side`, with the
    accurate integer DCT (Pillow's default; TensorFlow's own default is the fast one)."""
    import tensorflow as tf

    shape = tf.image.extract_jpeg_shape(data)
    fits = tf.minimum(shape[0] // side, shape[1] // side)
    index = tf.reduce_sum(tf.cast(fits >= tf.constant([2, 4, 8]), tf.int32))
    branches = [lambda r=r: tf.image.decode_jpeg(data, channels=0, ratio=r,
                                                 dct_method="INTEGER_ACCURATE")
                for r in (1, 2, 4, 8)]
    return tf.switch_case(index, branches)


def _decode_to_input(model: TrainedModel, answer: Any) -> Any:
    """encoded image bytes [N] → the network's float32 input [N, H, W, C], each image
    decoded (first frame of a GIF; a JPEG reduced as the host decoder reduces it) and
    preprocessed alone (sizes differ)."""
    import tensorflow as tf

    side = max(model.image_shape[:2])

    def one(data: Any) -> Any:
        image = tf.cond(
            tf.io.is_jpeg(data), lambda: _decode_jpeg_reduced(data, side),
            lambda: tf.io.decode_image(data, channels=0, dtype=tf.uint8,
                                       expand_animations=False))
        return model.preprocessor(image[tf.newaxis])[0]

    def decode(image_bytes: Any) -> Any:
        return tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec(
            model.image_shape, tf.float32))

    return decode


def add_serving_endpoints(archive: Any, model: TrainedModel) -> None:
    """The SavedModel's four signatures on a `keras.export.ExportArchive`."""
    import tensorflow as tf

    answer = model.answer_graph()
    decode = _decode_to_input(model, answer)
    archive.add_endpoint(
        SIGNATURE, lambda images: {OUTPUT_NAME: answer.from_input(images)[OUTPUT_NAME]},
        input_signature=[_spec((None, *model.image_shape), tf.float32, INPUT_NAME)])
    archive.add_endpoint(
        BYTES_SIGNATURE, lambda image_bytes: answer.from_input(decode(image_bytes)),
        input_signature=[_spec((None,), tf.string, BYTES_INPUT)])
    archive.add_endpoint(
        UINT8_SIGNATURE, lambda images: answer(images),
        input_signature=[_spec((None, None, None, None), tf.uint8, INPUT_NAME)])
    names = tf.constant(model.class_names, dtype=tf.string)
    archive.add_endpoint("class_names", tf.function(lambda: {"class_names": names}),
                         input_signature=[])


def write_saved_model(model: TrainedModel, folder: Path) -> None:
    """The SavedModel with its signatures, and `assets.extra/labels.txt`, into `folder`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model.network)
    add_serving_endpoints(archive, model)
    archive.write_out(str(folder), verbose=False)
    labels = folder / "assets.extra" / "labels.txt"
    labels.parent.mkdir(exist_ok=True)
    labels.write_text("".join(f"{name}\n" for name in model.class_names), encoding="utf-8")


def tflite_bytes(model: TrainedModel, quantize: str = "none") -> bytes:
    """The TFLite flatbuffer: uint8 images at the model's size → probabilities."""
    import tensorflow as tf

    answer = model.answer_graph()

    def endpoints(archive: Any) -> None:
        archive.add_endpoint(
            SIGNATURE, lambda images: {OUTPUT_NAME: answer(images)[OUTPUT_NAME]},
            input_signature=[_spec((None, *model.image_shape), tf.uint8, INPUT_NAME)])

    return tflite_from_archive(endpoints, model.network, SIGNATURE, quantize)


def _plain_stack(model: TrainedModel, fmt: str) -> list[Any]:
    """The trained layers, tfcnn's mirror layers rewritten as stock ones."""
    from tfcnn.models.mirror import plain_layers

    network = model.network
    if not hasattr(network, "stack"):
        raise ConfigError(f"{model.path}: not a model saved by tfcnn train (found "
                          f"{type(network).__name__}); export a run's model.keras")
    try:
        return plain_layers(network.stack, (None, *model.image_shape))
    except ValueError as e:
        raise ConfigError(f"format {fmt}: {e}; export saved_model or tflite instead") from e


def _answer_layers(model: TrainedModel, x: Any) -> Any:
    """Temperature and softmax after the logits, as stock Keras layers."""
    import keras

    x = keras.layers.Rescaling(1.0 / model.calibration.temperature, name="temperature")(x)
    return keras.layers.Softmax(axis=-1, name=OUTPUT_NAME)(x)


def keras_functional(model: TrainedModel) -> Any:
    """The trained layers as a plain functional model (float32 [0, 1] images at the model's
    size → probabilities) that `keras.saving.load_model` reads without tfcnn."""
    import keras

    stack = _plain_stack(model, "keras")
    x = inputs = keras.Input(shape=model.image_shape, dtype="float32", name=INPUT_NAME)
    # The same layer objects (and weights) the network calls in order; a functional model
    # runs BN/Dropout in inference mode unless told otherwise.
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, _answer_layers(model, x), name=model.network.name)


def onnx_file(model: TrainedModel, out: Path) -> None:
    """The ONNX file (uint8 images at the model's size → probabilities), through Keras 3's
    own `model.export(format="onnx")`; a network its converter cannot take is one line."""
    import keras
    import numpy as np

    stack = _plain_stack(model, "onnx")
    x = inputs = keras.Input(shape=model.image_shape, dtype="uint8", name=INPUT_NAME)
    x = model.preprocessor(x)  # at the model's size: the scaling alone
    for layer in stack:
        x = layer(x)
    functional = keras.Model(inputs, _answer_layers(model, x), name="tfcnn")
    functional(np.zeros((1, *model.image_shape), np.uint8))  # Keras exports called models
    try:
        with warnings.catch_warnings():
            # Keras's tf2onnx glue probes `np.object` (a FutureWarning on numpy 2): nothing
            # a user can act on, printed on their terminal otherwise.
            warnings.filterwarnings("ignore", category=FutureWarning, module="keras")
            functional.export(str(out), format="onnx", verbose=False)
    except ImportError as e:
        raise ConfigError(f"format onnx: needs the tf2onnx package ({e}); pip install "
                          "'tfcnn[onnx]'") from None
    except Exception as e:  # the converter raises many kinds for ops it lacks
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"format onnx: the ONNX converter cannot take this network "
                          f"({why}); export saved_model or tflite instead") from None
    if not out.is_file() or not out.stat().st_size:
        raise ConfigError("format onnx: the ONNX converter wrote no file; export "
                          "saved_model or tflite instead")
    _check_onnx(model, out)


ONNX_TOLERANCE = 1e-4  # largest probability difference from the model accepted


def _check_onnx(model: TrainedModel, out: Path) -> None:
    """Run the file with onnxruntime on a probe batch: tf2onnx writes files it could not
    fully convert (an op it lacks becomes a node no runtime knows), so only a run proves
    it. Skipped, with nothing claimed, where onnxruntime is not installed."""
    import numpy as np

    try:
        import onnxruntime
    except ImportError:
        return
    probe = np.random.default_rng(0).integers(0, 256, (4, *model.image_shape), np.uint8)
    try:
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: probe})[0]
    except Exception as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"format onnx: the converted network does not run in onnxruntime "
                          f"({why}); export saved_model or tflite instead") from None
    difference = float(np.abs(got - model.predict_proba(probe)).max())
    if not difference <= ONNX_TOLERANCE:
        raise ConfigError(f"format onnx: the converted network answers {difference:.2g} away "
                          "from the model's probabilities; export saved_model or tflite "
                          "instead")
