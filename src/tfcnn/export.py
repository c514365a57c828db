"""Exporting a trained model for deployment: a `.keras` file, a SavedModel or a TFLite file.

This module owns the exported artefacts' contract, the same for every format:

- input: float32 images `[N, H, W, C]` scaled to 0-1 (what the training pipeline feeds the
  model: pixel / 255; digit images already MNIST-style prepared, see `tfcnn.images.prepare`);
- output: softmax probabilities `[N, classes]` (the trained model returns logits; the export
  adds the softmax);
- names: the signature `serving_default` with input `images` and output `probabilities`
  (SavedModel and TFLite); the `.keras` model's input layer is `images`, its last `probabilities`;
- class names (output index i is line i + 1): SavedModel: `assets.extra/labels.txt` and a
  second signature `class_names`; keras and tflite: a sidecar `<out>.labels.txt`.

The `.keras` export is a plain functional model (the trained layers, then a softmax), so
`keras.saving.load_model` reads it without importing tfcnn; it is for deployment, not for
feeding back into tfcnn commands, which read a run's `model.keras`.

Writes are atomic: files go through `tfcnn.core.fsutil.atomic_path`, a SavedModel is written to
a temporary folder beside `out` and renamed into place. An existing file at `out`, or an
existing SavedModel folder, is replaced only when asked (`force`); any other existing folder
is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.fsutil import atomic_path

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZE = ("none", "dynamic", "float16")
INPUT_NAME, OUTPUT_NAME, SIGNATURE = "images", "probabilities", "serving_default"
LABELS_SIDECAR = ".labels.txt"  # appended to the file name: model.tflite.labels.txt


def labels_path(out: Path, fmt: str) -> Path:
    """Where the class names of an export at `out` are written."""
    out = Path(out)
    if fmt == "saved_model":
        return out / "assets.extra" / "labels.txt"
    return out.with_name(out.name + LABELS_SIDECAR)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _check_options(fmt: str, quantize: str, out: Path) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize {quantize}: expected one of {', '.join(QUANTIZE)}")
    if quantize != "none" and fmt != "tflite":
        raise ConfigError(f"--quantize {quantize}: only applies to --format tflite")
    # keras.saving.load_model refuses other names, so an export it cannot read is refused here.
    if fmt == "keras" and out.suffix != ".keras":
        raise ConfigError(f"--out {out}: a keras export must be named *.keras")
    if fmt == "saved_model":
        if out.exists() and not (out.is_dir() and (out / "saved_model.pb").is_file()):
            raise ConfigError(f"--out {out}: exists and is not a SavedModel folder; "
                              "refusing to replace it")
    elif out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; expected a file name")


def _is_notation_model(model: Any) -> bool:
    """A model `tfcnn train` makes: a NotationModel or a `keras:` BackboneModel (both a
    plain `stack` of layers, `image_shape` and `class_names`)."""
    from tfcnn.models.backbones import BackboneModel
    from tfcnn.models.network import NotationModel

    return isinstance(model, NotationModel | BackboneModel)


def check_export_target(fmt: str, quantize: str, out: Path, force: bool = False) -> None:
    """The format, quantization and output path are usable (no TensorFlow needed); an
    existing `out` is refused unless `force`."""
    _check_options(fmt, quantize, Path(out))
    if Path(out).exists() and not force:
        raise ConfigError(f"--out {out}: already exists (pass --force, or force=True, to "
                          "replace it)")


def _load_source(model_file: Path) -> Any:
    from tfcnn.models.loader import load_checked_model

    model = load_checked_model(model_file)
    if not _is_notation_model(model):
        raise RunDirError(f"{model_file}: not a model saved by tfcnn train "
                          f"(found {type(model).__name__}); export a run's model.keras")
    return model


def _keras_model(model: Any) -> Any:
    """The trained layers as a plain functional model ending in a softmax."""
    import keras

    from tfcnn.models.mirror import plain_layers

    # Mirror layers are tfcnn's own: they become ordinary ones computing the same, so the
    # file still loads without tfcnn.
    try:
        stack = plain_layers(model.stack, (None, *model.image_shape))
    except ValueError as e:
        raise ConfigError(f"--format keras: {e}; export saved_model or tflite instead") from e
    x = inputs = keras.Input(shape=model.image_shape, dtype="float32", name=INPUT_NAME)
    # The same layer objects (and so the same weights) the NotationModel calls in order;
    # a functional model runs BN/Dropout in inference mode unless told otherwise.
    for layer in stack:
        x = layer(x)
    outputs = keras.layers.Softmax(axis=-1, name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=model.name)


def _write_saved_model(model: Any, folder: Path) -> None:
    """The SavedModel, with signatures `serving_default` and `class_names`, into `folder`."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE,
        lambda images: {OUTPUT_NAME: tf.nn.softmax(model(images, training=False), axis=-1)},
        input_signature=[tf.TensorSpec([None, *model.image_shape], tf.float32, name=INPUT_NAME)])
    names = tf.constant(list(model.class_names), dtype=tf.string)
    archive.add_endpoint("class_names", tf.function(lambda: {"class_names": names}),
                         input_signature=[])
    archive.write_out(str(folder), verbose=False)
    labels = folder / "assets.extra" / "labels.txt"
    labels.parent.mkdir(exist_ok=True)
    labels.write_text("".join(f"{name}\n" for name in model.class_names), encoding="utf-8")


def tflite_bytes(model: Any, quantize: str = "none") -> bytes:
    """A loaded tfcnn model as a TFLite flatbuffer (the export's contract: images in,
    probabilities out), converted through a temporary SavedModel, the converter's
    recommended source. The server runs it with LiteRT."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tfcnn-export-") as tmp:
        _write_saved_model(model, Path(tmp))
        # Only the serving signature: `class_names` (a string constant) stays out of the file.
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float math
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; swap it in if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700; give the usual mode
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
            return
        # os.replace cannot replace a non-empty folder: move the old one aside first, and
        # put it back if the new one cannot take its place.
        holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                       dir=target.parent))
        os.replace(target, holder / "old")
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(holder / "old", target)
            raise
        shutil.rmtree(holder, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_model(model: Any, fmt: str, quantize: str, out: Path, *, force: bool = False,
                 source: Path | None = None) -> dict[str, Any]:
    """Write `model` (a loaded tfcnn model, or the path of one) as `fmt` to `out` (see the
    module docstring). An existing `out` is replaced only with `force`. `source`: the
    model's file, named in errors.

    Returns {"format", "quantize", "path", "bytes" (the model file, or the sum of the
    SavedModel folder's files), "labels" (the class-names file), "files" ({path: bytes}
    for each file or folder written)}.
    """
    out = Path(out)
    check_export_target(fmt, quantize, out, force)
    if isinstance(model, str | Path):
        source, model = Path(model), _load_source(Path(model))
    elif not _is_notation_model(model):
        raise RunDirError(f"{source or 'model'}: not a model saved by tfcnn train "
                          f"(found {type(model).__name__}); export a run's model.keras")
    labels = labels_path(out, fmt)
    labels_text = "".join(f"{name}\n" for name in model.class_names)
    try:
        if fmt == "saved_model":
            with _atomic_dir(out) as tmp:
                _write_saved_model(model, tmp)
        else:
            # The model is renamed into place before its labels (the inner block ends first).
            with atomic_path(labels) as tmp_labels, \
                    atomic_path(out, suffix=".keras" if fmt == "keras" else "") as tmp:
                tmp_labels.write_text(labels_text, encoding="utf-8")
                if fmt == "keras":
                    _keras_model(model).save(tmp)
                else:
                    tmp.write_bytes(tflite_bytes(model, quantize))
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write ({e.strerror or e})") from e
    written = [out] if fmt == "saved_model" else [out, labels]
    return {"format": fmt, "quantize": quantize, "path": str(out), "bytes": _size(out),
            "labels": str(labels), "files": {str(p): _size(p) for p in written}}


def _tflite_interpreter(path: Path) -> Any:
    try:  # LiteRT: tf.lite.Interpreter is deprecated in its favour
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path))


def verify_export(path: Path, fmt: str, images: np.ndarray,
                  batch_size: int = 1000) -> np.ndarray:
    """Probabilities from the export at `path`, run by its format's own runtime.

    `images`: float32 `[N, H, W, C]` scaled to 0-1. Keras: `keras.saving.load_model`;
    SavedModel: `tf.saved_model.load` and its `serving_default` signature; TFLite: the
    LiteRT interpreter (TensorFlow's deprecated one if `ai-edge-litert` is missing).
    """
    images = np.asarray(images, dtype=np.float32)
    path = Path(path)
    if fmt == "keras":
        import keras

        model = keras.saving.load_model(str(path), compile=False)
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        return np.concatenate([
            serve(**{INPUT_NAME: tf.constant(images[i:i + batch_size])})[OUTPUT_NAME].numpy()
            for i in range(0, len(images), batch_size)])
    if fmt == "tflite":
        runner = _tflite_interpreter(path).get_signature_runner(SIGNATURE)
        return np.concatenate([runner(**{INPUT_NAME: images[i:i + batch_size]})[OUTPUT_NAME]
                               for i in range(0, len(images), batch_size)])
    raise ConfigError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
