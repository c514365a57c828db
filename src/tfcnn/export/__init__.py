"""Exporting a trained model for deployment: `.keras`, SavedModel, TFLite or ONNX files that
answer as `tfcnn predict` does, with no preprocessing code in the client.

The contract (names fixed: tools read them), probabilities always calibrated (the model's
temperature) and in class order:

- SavedModel (a folder; TF Serving, Triton or KServe host it as it is):
  - `serving_default`: `images` float32 [N, H, W, C] in [0, 1] at the model's size →
    `probabilities` float32 [N, classes];
  - `serving_bytes`: `image_bytes` tf.string [N] (encoded PNG, JPEG, GIF or BMP; TF
    Serving's REST API accepts them as `{"b64": ...}`) → `probabilities` and `labels`
    (tf.string [N]);
  - `serving_uint8`: `images` uint8 [N, H', W', C'] of any size and 1-4 channels →
    `probabilities` and `labels`;
  - `class_names`: no input → `class_names`; also `assets.extra/labels.txt`.
- TFLite: `serving_default` with `images` uint8 [N, H, W, C] at the model's size (scaling
  inside) → `probabilities`.
- ONNX (Keras 3's `model.export(format="onnx")`, through tf2onnx): input `images` uint8
  [N, H, W, C] at the model's size → `probabilities`.
- `.keras`: a plain functional model (loads without tfcnn): `images` float32 [0, 1] at the
  model's size → `probabilities`.
- Beside a file export: `<out>.labels.txt` (class i on line i + 1) and `<out>.json` (image
  shape, input type, class names, temperature, the host-side step).

Every graph runs the model's own `Preprocessor` (`tfcnn.images.preprocessor`): scaling,
alpha, channels and, for other sizes, an antialiased bilinear resize. Digit models'
MNIST-style step (`prepare: "mnist"`) runs on the host in `tfcnn predict` and cannot be in a
graph: their exports take digits already white on black and centred, as MNIST is.

Writes are atomic (`tfcnn.core.fsutil.atomic_path`; a SavedModel goes to a temporary
folder renamed into place). An existing `out` is replaced only with `force`; any other
existing folder is refused, never deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_path
from tfcnn.export.files import atomic_dir, size_of
from tfcnn.export.graphs import (
    BYTES_SIGNATURE,
    INPUT_NAME,
    LABELS_OUTPUT,
    OUTPUT_NAME,
    SIGNATURE,
    UINT8_SIGNATURE,
    keras_functional,
    onnx_file,
    tflite_bytes,
    write_saved_model,
)
from tfcnn.models.trained import TrainedModel

__all__ = ["BYTES_SIGNATURE", "FORMATS", "INPUT_NAME", "LABELS_OUTPUT", "OUTPUT_NAME",
           "QUANTIZE", "SIGNATURE", "UINT8_SIGNATURE", "check_export_target", "export_model",
           "labels_path", "metadata_path"]

FORMATS = ("keras", "saved_model", "tflite", "onnx")
QUANTIZE = ("none", "dynamic", "float16")
LABELS_SIDECAR = ".labels.txt"  # appended to the file name: model.tflite.labels.txt
METADATA_SIDECAR = ".json"      # model.tflite.json


def labels_path(out: Path, fmt: str) -> Path:
    """Where the class names of an export at `out` are written."""
    out = Path(out)
    if fmt == "saved_model":
        return out / "assets.extra" / "labels.txt"
    return out.with_name(out.name + LABELS_SIDECAR)


def metadata_path(out: Path) -> Path:
    """Where a file export's metadata sidecar (image shape, input type, classes) goes."""
    return Path(out).with_name(Path(out).name + METADATA_SIDECAR)


def _check_options(fmt: str, quantize: str, out: Path) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if quantize != "none" and fmt != "tflite":
        raise ConfigError(f"quantize {quantize!r}: only applies to the tflite format")
    # keras.saving.load_model refuses other names, so an export it cannot read is refused here.
    if fmt == "keras" and out.suffix != ".keras":
        raise ConfigError(f"out {out}: a keras export must be named *.keras")
    if fmt == "saved_model":
        if out.exists() and not (out.is_dir() and (out / "saved_model.pb").is_file()):
            raise ConfigError(f"out {out}: exists and is not a SavedModel folder; "
                              "refusing to replace it")
    elif out.is_dir():
        raise ConfigError(f"out {out}: is a folder; expected a file name")


def check_export_target(fmt: str, quantize: str, out: Path, force: bool = False) -> None:
    """The format, quantization and output path are usable (no TensorFlow needed); an
    existing `out` is refused unless `force`."""
    _check_options(fmt, quantize, Path(out))
    if Path(out).exists() and not force:
        raise ConfigError(f"out {out}: already exists (replace it with force=True, or "
                          "--force on the command line)")


def _metadata(model: TrainedModel, fmt: str) -> dict[str, Any]:
    graph_input = {"tflite": "uint8", "onnx": "uint8"}.get(fmt, "float32 in [0, 1]")
    return {"format": fmt, "image_shape": list(model.image_shape), "input": graph_input,
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
            "class_names": model.class_names, "prepare": model.prepare,
            "temperature": model.calibration.temperature, "source": str(model.path)}


def _write_file_export(model: TrainedModel, fmt: str, quantize: str, out: Path) -> None:
    labels = "".join(f"{name}\n" for name in model.class_names)
    # The model is renamed into place before its sidecars (the inner block ends first).
    with atomic_path(labels_path(out, fmt)) as tmp_labels, \
            atomic_path(metadata_path(out)) as tmp_meta, \
            atomic_path(out, suffix=".keras" if fmt == "keras" else "") as tmp:
        tmp_labels.write_text(labels, encoding="utf-8")
        tmp_meta.write_text(json.dumps(_metadata(model, fmt), indent=2) + "\n",
                            encoding="utf-8")
        if fmt == "keras":
            keras_functional(model).save(tmp)
        elif fmt == "tflite":
            tmp.write_bytes(tflite_bytes(model, quantize))
        else:
            onnx_file(model, tmp)


def export_model(model: TrainedModel | str | Path, fmt: str, quantize: str, out: Path, *,
                 force: bool = False) -> dict[str, Any]:
    """Write `model` (a `TrainedModel`, or the path of one) as `fmt` to `out` (see the
    module docstring). An existing `out` is replaced only with `force`.

    Returns {"format", "quantize", "path", "bytes" (the model file, or the sum of the
    SavedModel folder's files), "labels" (the class-names file), "files" ({path: bytes}
    for each file or folder written)}.
    """
    out = Path(out)
    check_export_target(fmt, quantize, out, force)
    if not isinstance(model, TrainedModel):
        model = TrainedModel.load(model)
    try:
        if fmt == "saved_model":
            with atomic_dir(out) as tmp:
                write_saved_model(model, tmp)
        else:
            _write_file_export(model, fmt, quantize, out)
    except OSError as e:
        raise ConfigError(f"out {out}: cannot write ({e.strerror or e})") from e
    written = [out] if fmt == "saved_model" else [out, labels_path(out, fmt), metadata_path(out)]
    return {"format": fmt, "quantize": quantize, "path": str(out), "bytes": size_of(out),
            "labels": str(labels_path(out, fmt)), "files": {str(p): size_of(p) for p in written}}
