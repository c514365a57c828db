"""Exports: each format, loaded by its own runtime in a fresh process, agrees with the Keras model,
and the SavedModel's raw-image signatures answer image files as `tfcnn predict` does.

The slow tests export the trained run through the CLI once per format (module fixture), run
each artefact on the 10,000 MNIST test images in a subprocess that imports no tfcnn, and
compare with the source model's softmax (`support.probabilities`, an independent
reference). The fast tests use an untrained model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import run_tfcnn
from tfcnn.core.errors import ConfigError, ModelSpecError, RunDirError

# (format, quantize, out name, minimum top-1 agreement, maximum abs difference or None)
CASES = [
    ("keras", "none", "model.keras", 0.999, 1e-4),
    ("saved_model", "none", "saved_model", 0.999, 1e-4),
    ("tflite", "none", "model.tflite", 0.999, 1e-4),
    ("tflite", "dynamic", "dynamic.tflite", 0.99, None),
    ("tflite", "float16", "float16.tflite", 0.99, None),
    ("onnx", "none", "model.onnx", 0.999, 1e-4),
]

# Each runtime alone: the probabilities must come from the artefact, not from tfcnn's code.
_LOADERS = {
    "keras": ("import keras\n"
              "model = keras.saving.load_model(path, compile=False)\n"
              "probs = model.predict(x, batch_size=1000, verbose=0)\n"),
    "saved_model": ("import tensorflow as tf\n"
                    "serve = tf.saved_model.load(path).signatures['serving_default']\n"
                    "probs = np.concatenate([serve(images=tf.constant(x[i:i + 1000]))"
                    "['probabilities'].numpy() for i in range(0, len(x), 1000)])\n"),
    "tflite": ("from ai_edge_litert.interpreter import Interpreter\n"
               "run = Interpreter(model_path=path).get_signature_runner('serving_default')\n"
               "probs = run(images=pixels)['probabilities']\n"
               "assert 'tensorflow' not in sys.modules\n"),
    "onnx": ("import onnxruntime\n"
             "s = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])\n"
             "probs = s.run(None, {s.get_inputs()[0].name: pixels})[0]\n"
             "assert 'tensorflow' not in sys.modules\n"),
}


def _fresh_probabilities(fmt: str, path: Path, x_file: Path, out_file: Path) -> np.ndarray:
    # The float formats take images in [0, 1]; TFLite and ONNX take the uint8 pixels.
    code = ("import sys\nimport numpy as np\n"
            f"path, pixels = {str(path)!r}, np.load({str(x_file)!r})\n"
            "x = pixels.astype(np.float32) / 255.0\n"
            + _LOADERS[fmt] +
            "assert not any(m.startswith('tfcnn') for m in sys.modules)\n"
            f"np.save({str(out_file)!r}, probs)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out_file)


def _disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@pytest.fixture(scope="module")
def test_images(shared_datasets_dir, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The MNIST test images (uint8 NHWC, saved to .npy) and as float32 in [0, 1]."""
    from tfcnn.data.locate import load_dataset

    data = load_dataset("mnist", shared_datasets_dir, download=False, progress=False)
    pixels = data.x_test[..., np.newaxis]
    path = tmp_path_factory.mktemp("export-data") / "x_test.npy"
    np.save(path, pixels)
    return path, pixels.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def reference(trained_mnist_run, test_images) -> np.ndarray:
    from support import probabilities
    from tfcnn.models.network import load_model

    model = load_model(trained_mnist_run / "model.keras")
    return np.concatenate([np.asarray(probabilities(model, test_images[1][i:i + 1000]))
                           for i in range(0, len(test_images[1]), 1000)])


@pytest.fixture(scope="module")
def exports(trained_mnist_run, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, str]]:
    """Every format exported once through the CLI: (format, quantize) → (path, stdout)."""
    out_dir = tmp_path_factory.mktemp("exports")
    # All at once: each process spends most of its time importing TensorFlow on one core.
    running = {(fmt, quantize): (out_dir / name, subprocess.Popen(
        [sys.executable, "-m", "tfcnn", "export", str(trained_mnist_run), "--format", fmt,
         "--quantize", quantize, "--out", str(out_dir / name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for fmt, quantize, name, *_ in CASES}
    made = {}
    for key, (out, process) in running.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        made[key] = (out, stdout)
    return made


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "quantize", "name", "min_agreement", "max_diff"), CASES)
def test_export_agrees_with_the_keras_model_in_a_fresh_process(
        fmt, quantize, name, min_agreement, max_diff, exports, reference, test_images, tmp_path):
    path, _ = exports[fmt, quantize]
    probs = _fresh_probabilities(fmt, path, test_images[0], tmp_path / "probs.npy")
    assert probs.shape == reference.shape
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)  # probabilities, not logits
    agreement = float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1)))
    assert agreement >= min_agreement, f"{fmt}/{quantize}: top-1 agreement {agreement:.4%}"
    if max_diff is not None:
        assert float(np.abs(probs - reference).max()) <= max_diff


@pytest.mark.slow
def test_cli_reports_the_size_on_disk_and_writes_class_names(exports):
    for (fmt, quantize), (path, stdout) in exports.items():
        match = re.fullmatch(r"Exported (\w+) \((\w+)\) to (.+): ([\d,]+) bytes\n"
                             r"Class names: (.+)\n", stdout)
        assert match, stdout
        assert match.group(1, 2, 3) == (fmt, quantize, str(path))
        assert int(match.group(4).replace(",", "")) == _disk_size(path)
        labels = (path / "assets.extra" / "labels.txt" if fmt == "saved_model"
                  else path.with_name(path.name + ".labels.txt"))
        assert labels.read_text().split() == [str(d) for d in range(10)]
        assert match.group(5) == str(labels)
    sizes = {key: _disk_size(path) for key, (path, _) in exports.items()}
    assert sizes["tflite", "dynamic"] < sizes["tflite", "float16"] < sizes["tflite", "none"]


@pytest.mark.slow
def test_bad_export_options_are_one_line_with_exit_status_2(trained_mnist_run, tmp_path):
    cases = [
        (["export", str(trained_mnist_run), "--format", "keras", "--quantize", "dynamic",
          "--out", str(tmp_path / "m.keras")],
         "quantize 'dynamic': only applies to the tflite format"),
        (["export", str(tmp_path / "nope"), "--format", "tflite", "--out",
          str(tmp_path / "m.tflite")], "no such run directory or model file"),
    ]
    for argv, expected in cases:
        done = run_tfcnn(*argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("tfcnn: error: ")
        assert expected in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


# --- fast: an untrained model, in-process -----------------------------------------------------


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory) -> Path:
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("small") / "model.keras"
    build_model("8C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=1).save(path)
    return path


def test_export_and_verify_round_trip_in_process(small_model_file, tmp_path):
    from support import probabilities
    from tfcnn.export import export_model
    from tfcnn.export.verify import verify_export
    from tfcnn.models.network import load_model

    pixels = np.random.default_rng(0).integers(0, 256, (37, 28, 28, 1), np.uint8)
    x = pixels.astype(np.float32) / 255.0
    expected = np.asarray(probabilities(load_model(small_model_file), x))
    for fmt, name in (("keras", "m.keras"), ("saved_model", "sm"), ("tflite", "m.tflite"),
                      ("onnx", "m.onnx")):
        result = export_model(small_model_file, fmt, "none", tmp_path / name)
        assert result["bytes"] == _disk_size(tmp_path / name)
        assert set(result["files"]) >= {result["path"]}
        np.testing.assert_allclose(verify_export(tmp_path / name, fmt, pixels), expected,
                                   atol=1e-5)
    # The sidecar says what a client must send.
    meta = json.loads((tmp_path / "m.tflite.json").read_text())
    assert meta["image_shape"] == [28, 28, 1] and meta["input"] == "uint8"
    assert meta["class_names"] == list("0123456789") and meta["temperature"] == 1.0
    # Exporting again is refused without force (nothing is touched), then replaces the
    # earlier export (a SavedModel folder too) with it, leaving no temp files.
    before = (tmp_path / "m.tflite").read_bytes()
    with pytest.raises(ConfigError, match="m.tflite: already exists .*force"):
        export_model(small_model_file, "tflite", "dynamic", tmp_path / "m.tflite")
    assert (tmp_path / "m.tflite").read_bytes() == before
    export_model(small_model_file, "saved_model", "none", tmp_path / "sm", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.keras", "m.keras.json", "m.keras.labels.txt", "m.onnx", "m.onnx.json",
        "m.onnx.labels.txt", "m.tflite", "m.tflite.json", "m.tflite.labels.txt", "sm"]


def _image_files(folder: Path) -> list[Path]:
    """Image files as users have them: PNG, JPEG, GIF, BMP; grey, RGB, RGBA, palette; at the
    model's size and not."""
    rng = np.random.default_rng(3)
    folder.mkdir()
    files = []
    for i, (mode, size, suffix) in enumerate([
            ("L", (28, 28), "png"), ("RGB", (28, 28), "png"), ("RGBA", (28, 28), "png"),
            ("L", (56, 84), "png"), ("RGB", (40, 30), "jpg"), ("P", (28, 28), "gif"),
            ("RGB", (28, 28), "bmp"), ("L", (300, 200), "png"),
            ("RGB", (120, 90), "jpg"), ("L", (500, 260), "jpg")]):  # decoded at 1/2, 1/8
        blob = rng.integers(0, 256, (size[1] // 4 + 1, size[0] // 4 + 1, 3), np.uint8)
        image = Image.fromarray(blob).resize(size, Image.Resampling.BILINEAR).convert(mode)
        path = folder / f"{i}-{mode}.{suffix}"
        image.save(path)
        files.append(path)
    return files


def test_saved_model_raw_image_signatures_answer_files_as_predict_does(small_model_file,
                                                                       tmp_path):
    from tfcnn.api.classifier import load
    from tfcnn.export import export_model
    from tfcnn.export.verify import file_probabilities

    files = _image_files(tmp_path / "images")
    export_model(small_model_file, "saved_model", "none", tmp_path / "sm")
    clf = load(small_model_file)
    predicted = clf.predict_files(files, top_k=10)
    expected = np.array([[{t["label"]: t["probability"] for t in r["top_k"]}[name]
                          for name in clf.class_names] for r in predicted])
    for signature in ("serving_bytes", "serving_uint8"):
        probs, labels = file_probabilities(tmp_path / "sm", signature, files)
        assert labels == [clf.class_names[i] for i in probs.argmax(axis=1)]
        assert list(probs.argmax(axis=1)) == [r["index"] for r in predicted], signature
        # Files at the model's size decode to the very pixels predict feeds (alpha and
        # colour in Pillow's integer maths); resized ones differ by Pillow's and
        # TensorFlow's rounding (under 1 of 255 levels).
        np.testing.assert_allclose(probs[:3], expected[:3], atol=2e-6)
        np.testing.assert_allclose(probs, expected, atol=2e-3)


def test_signatures_decode_any_format_and_refuse_what_is_not_an_image(small_model_file,
                                                                       tmp_path):
    import tensorflow as tf

    from tfcnn.export import export_model

    export_model(small_model_file, "saved_model", "none", tmp_path / "sm")
    signatures = tf.saved_model.load(str(tmp_path / "sm")).signatures
    assert set(signatures) == {"serving_default", "serving_bytes", "serving_uint8",
                               "class_names"}
    batch = signatures["serving_uint8"](images=tf.zeros((3, 50, 20, 4), tf.uint8))
    assert batch["probabilities"].shape == (3, 10) and batch["labels"].shape == (3,)
    with pytest.raises(tf.errors.InvalidArgumentError):
        signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))


@pytest.mark.parametrize(("fmt", "quantize", "out", "expected"), [
    ("keras", "float16", "m.keras", "only applies to the tflite format"),
    ("saved_model", "dynamic", "sm", "only applies to the tflite format"),
    ("keras", "none", "m.h5", "must be named *.keras"),
    ("coreml", "none", "m.mlmodel", "format 'coreml': expected one of"),
    ("saved_model", "none", "folder", "not a SavedModel folder; refusing"),
    ("tflite", "none", "folder", "is a folder"),
    ("tflite", "none", "afile/m.tflite", "cannot write"),
])
def test_bad_options_and_outputs_raise_config_errors(small_model_file, tmp_path, fmt, quantize,
                                                     out, expected):
    from tfcnn.export import export_model

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("user data")
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(ConfigError, match=re.escape(expected)) as caught:
        export_model(small_model_file, fmt, quantize, tmp_path / out)
    assert "\n" not in str(caught.value)
    assert (tmp_path / "folder" / "keep.txt").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]


def test_a_failed_export_leaves_nothing_behind(small_model_file, tmp_path, monkeypatch):
    import tfcnn.export as export

    def broken(*args, **kwargs):
        raise RuntimeError("converter failed")

    monkeypatch.setattr(export, "tflite_bytes", broken)
    monkeypatch.setattr(export, "write_saved_model", broken)
    monkeypatch.setattr(export, "onnx_file", broken)
    for fmt, name in (("tflite", "m.tflite"), ("saved_model", "sm"), ("onnx", "m.onnx")):
        with pytest.raises(RuntimeError):
            export.export_model(small_model_file, fmt, "none", tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_model_not_saved_by_tfcnn_is_refused(small_model_file, tmp_path):
    from tfcnn.export import export_model

    export_model(small_model_file, "keras", "none", tmp_path / "plain.keras")
    # The one loader's checks: the same errors as evaluate, predict and serve give.
    with pytest.raises(ModelSpecError, match="plain.keras: not a tfcnn model"):
        export_model(tmp_path / "plain.keras", "tflite", "none", tmp_path / "m.tflite")
    (tmp_path / "junk.keras").write_text("not a zip")
    with pytest.raises(RunDirError, match="junk.keras: not a Keras model file"):
        export_model(tmp_path / "junk.keras", "tflite", "none", tmp_path / "m.tflite")


def _mirror_model_file(folder: Path, notation: str) -> Path:
    from tfcnn.models.network import build_model

    model = build_model(notation, (28, 28, 1), tuple("0123456789"), seed=4)
    rng = np.random.default_rng(4)
    # Batch-norm statistics away from their initial 0 / 1, so that their repetition is tested.
    for layer in model.stack:
        if "batchnorm" in layer.name:
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape) for w in layer.get_weights()])
    path = folder / "mirror.keras"
    model.save(path)
    return path


def test_a_mirror_network_exports_to_every_format_and_the_keras_file_needs_no_tfcnn(tmp_path):
    from support import probabilities
    from tfcnn.export import export_model
    from tfcnn.export.verify import verify_export
    from tfcnn.models.network import load_model

    source = _mirror_model_file(tmp_path, "8M3-BN-8M3-P2-BN-DO20-D10")
    pixels = np.random.default_rng(5).integers(0, 256, (9, 28, 28, 1), np.uint8)
    expected = np.asarray(probabilities(load_model(source), pixels.astype(np.float32) / 255))
    for fmt, name in (("keras", "m.keras"), ("saved_model", "sm"), ("tflite", "m.tflite"),
                      ("onnx", "m.onnx")):
        export_model(source, fmt, "none", tmp_path / name)
        np.testing.assert_allclose(verify_export(tmp_path / name, fmt, pixels), expected,
                                   atol=1e-5)
    script = ("import sys, keras\n"
              "m = keras.saving.load_model(sys.argv[1])\n"
              "print(sorted({type(layer).__module__.split('.')[0] for layer in m.layers}))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.keras")],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "['keras']"


def test_a_mirror_part_ending_in_a_convolution_has_no_keras_export(tmp_path):
    from tfcnn.export import export_model

    source = _mirror_model_file(tmp_path, "8M3-BN-8C3-D10")
    with pytest.raises(ConfigError, match="format keras: .*export saved_model or tflite"):
        export_model(source, "keras", "none", tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    export_model(source, "tflite", "none", tmp_path / "m.tflite")
