"""The public API (tfcnn.train / open_run / Run, tfcnn.load / Classifier, Report, Prediction):
names, lazy imports, training and resuming from Python, every input kind, bad inputs as
`TfcnnError`, and agreement with the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tfcnn
from support import draw_digit

API_NAMES = ("train", "open_run", "Run", "load", "Classifier", "Prediction", "Report",
             "Explanation", "datasets", "TfcnnError")


def test_import_tfcnn_is_light_and_names_resolve_lazily():
    code = ("import sys, tfcnn\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "names = dir(tfcnn)\n"
            f"assert all(n in names for n in {API_NAMES!r}), names\n"
            "tfcnn.TfcnnError, tfcnn.Prediction, tfcnn.train, tfcnn.Run, tfcnn.Report\n"
            "assert 'tensorflow' not in sys.modules, 'a name imported TensorFlow'\n"
            "print('light')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "light" in done.stdout, done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfcnn.nope  # noqa: B018
    assert issubclass(tfcnn.ImageError, tfcnn.TfcnnError)
    assert issubclass(tfcnn.RunDirError, tfcnn.TfcnnError)


def test_every_public_name_has_a_docstring_with_an_example():
    for name in ("train", "open_run", "load"):
        assert "Example:" in getattr(tfcnn, name).__doc__, name
    for cls in (tfcnn.Run, tfcnn.Classifier, tfcnn.Prediction, tfcnn.Report):
        assert "Example:" in (cls.__doc__ or ""), cls
    for method in ("predict", "probabilities", "evaluate", "explain", "export"):
        assert "Example:" in getattr(tfcnn.Classifier, method).__doc__, method


def test_bad_settings_fail_before_training(tmp_path):
    with pytest.raises(tfcnn.ConfigError, match="bogus: unknown setting"):
        tfcnn.train(bogus=1)
    with pytest.raises(tfcnn.ConfigError, match="epochs: expected a positive integer"):
        tfcnn.train(epochs=0)
    with pytest.raises(tfcnn.TfcnnError, match="no such directory"):
        tfcnn.train(data_dir=tmp_path / "missing", verbose=False)
    with pytest.raises(tfcnn.RunDirError, match="not a tfcnn run directory"):
        tfcnn.open_run(tmp_path)
    with pytest.raises(tfcnn.RunDirError, match="no such run directory or model file"):
        tfcnn.load(tmp_path / "nope.keras")


@pytest.fixture(scope="module")
def api_run(shared_datasets_dir, tmp_path_factory):
    """One epoch of a small network on 1,024 MNIST images, trained through tfcnn.train with
    a relative data_dir, and the epoch records its callback received."""
    root = tmp_path_factory.mktemp("api")
    records: list[dict] = []
    here = os.getcwd()
    os.chdir(root)
    try:
        relative = os.path.relpath(shared_datasets_dir, root)
        run = tfcnn.train(dataset="mnist", data_dir=relative, model="8C3-P2-16C3-P2-D10",
                          epochs=1, batch_size=64, limit_train=1024, limit_test=500, seed=3,
                          out="run", on_epoch_end=records.append, verbose=False)
    finally:
        os.chdir(here)
    return run, records, root


@pytest.mark.slow
def test_train_returns_a_run_with_config_metrics_and_history(api_run, shared_datasets_dir):
    run, records, root = api_run
    assert isinstance(run, tfcnn.Run) and run.path == Path("run")
    run = tfcnn.open_run(root / "run")
    assert run.config.epochs == 1 and run.config.seed == 3
    # A relative data_dir is stored absolute, so the run works from any folder.
    assert os.path.isabs(run.config.data_dir)
    assert Path(run.config.data_dir).resolve() == shared_datasets_dir.resolve()
    assert [r["epoch"] for r in run.history] == [1] == [r["epoch"] for r in records]
    assert run.metrics["test_accuracy"] == run.history[-1]["test_accuracy"]
    assert records[0]["images_per_second"] > 0
    resumed = tfcnn.train(resume=root / "run", epochs=2, verbose=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    with pytest.raises(tfcnn.ConfigError, match="lr: not allowed with resume"):
        tfcnn.train(resume=root / "run", lr=0.1)


@pytest.mark.slow
def test_classifier_predicts_every_input_kind_alike(api_run, tmp_path):
    run, _, root = api_run
    clf = tfcnn.open_run(root / "run").load()
    assert isinstance(clf, tfcnn.Classifier)
    assert clf.class_names == [str(i) for i in range(10)] and clf.image_shape == (28, 28, 1)
    assert clf.keras_model(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)  # logits
    image = draw_digit(3, canvas=(80, 60), size=50)
    path = tmp_path / "three.png"
    image.save(path)
    pixels = np.asarray(image.convert("L"))
    from_file, from_pil, from_array = (clf.predict(x, top_k=2)[0]
                                       for x in (path, image, pixels))
    assert isinstance(from_file, tfcnn.Prediction) and from_file.source == str(path)
    assert from_file.top_k == from_pil.top_k == from_array.top_k
    assert len(from_file.top_k) == 2 and from_file.label == from_file.top_k[0][0]
    # A batch of arrays already of the input shape, uint8 or float, with preprocess=False:
    # fed unchanged, so the probabilities are the Keras model's own.
    batch = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    probs = clf.probabilities(batch, preprocess=False)
    logits = np.asarray(clf.keras_model(batch.astype(np.float32) / 255.0))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(clf.probabilities(batch / 255.0, preprocess=False), probs,
                               atol=1e-6)
    # N×H×W grey images (as tfcnn.datasets.load gives them) are a batch too.
    np.testing.assert_allclose(clf.probabilities(batch[..., 0], preprocess=False), probs,
                               atol=1e-6)
    predictions = clf.predict([path, batch], preprocess=False)
    assert [p.source for p in predictions] == [str(path), *(f"array[{i}]" for i in range(1, 6))]
    assert [p.index for p in predictions[1:]] == probs.argmax(axis=1).tolist()


@pytest.mark.slow
@pytest.mark.parametrize(("bad", "message"), [
    ("missing.png", "missing.png: no such file"),
    ("text.png", "text.png: not a PNG, JPEG, BMP, GIF or WebP image"),
    (np.zeros((2, 28, 28, 5), np.uint8), "array[0]: expected an image array of shape"),
    (np.zeros((28, 28), np.int16), "array[0]: expected uint8 pixels (0-255) or floats"),
    (np.full((28, 28), 255.0), "array[0]: float values outside [0, 1]"),
    (42, "inputs: expected a file path, a Pillow image, a numpy array"),
    ([], "inputs: empty list"),
])
def test_bad_inputs_raise_one_line_tfcnn_errors(api_run, tmp_path, bad, message):
    run, _, root = api_run
    clf = tfcnn.load(root / "run")
    (tmp_path / "text.png").write_text("not an image")
    if isinstance(bad, str):
        bad = tmp_path / bad
    with pytest.raises(tfcnn.TfcnnError) as caught:
        clf.predict(bad)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_evaluate_report_equals_the_cli_json(api_run, tmp_path, capsys):
    from matplotlib.figure import Figure

    from tfcnn.cli import main

    _, _, root = api_run
    clf = tfcnn.load(root / "run")
    report = clf.evaluate(report_dir=tmp_path / "report")
    assert isinstance(report, tfcnn.Report)
    assert report.confusion_matrix.shape == (10, 10)
    assert report.confusion_matrix.sum() == 10_000  # the whole test set; limit_test is training's
    assert report.accuracy == pytest.approx(np.trace(report.confusion_matrix) / 10_000)
    assert len(report.per_class) == 10 and report.loss > 0
    assert set(report.figures) == {"confusion_matrix", "worst_images", "training_curves",
                                   "reliability"}
    assert all(isinstance(f, Figure) for f in report.figures.values())
    assert (tmp_path / "report" / "evaluation.json").is_file()
    assert main(["evaluate", str(root / "run"), "--json", "--out", str(tmp_path / "cli")]) == 0
    assert json.loads(capsys.readouterr().out) == report.to_dict()


@pytest.mark.slow
def test_export_writes_a_model_and_refuses_to_overwrite(api_run, tmp_path):
    _, _, root = api_run
    clf = tfcnn.load(root / "run")
    out = clf.export(tmp_path / "m.tflite", format="tflite")
    assert out == tmp_path / "m.tflite" and out.stat().st_size > 0
    with pytest.raises(tfcnn.ConfigError, match="already exists"):
        clf.export(out, format="tflite")
    assert clf.export(out, format="tflite", quantize="dynamic", force=True) == out


def test_prediction_from_probabilities_and_its_json_form():
    p = tfcnn.Prediction.from_probabilities([0.2, 0.5, 0.3], ["a", "b", "c"], top_k=5,
                                            source="x.png")
    assert (p.label, p.index, p.probability) == ("b", 1, 0.5)
    assert p.top_k == [("b", 0.5), ("c", 0.3), ("a", 0.2)]
    assert p.to_dict() == {"file": "x.png", "label": "b", "index": 1, "probability": 0.5,
                           "unknown": False, "top_k": [{"label": "b", "probability": 0.5},
                                     {"label": "c", "probability": 0.3},
                                     {"label": "a", "probability": 0.2}]}


def test_pillow_images_of_any_mode_are_accepted(tmp_path):
    from tfcnn.predict.inputs import model_inputs

    images = [Image.new(mode, (40, 30)) for mode in ("L", "RGB", "RGBA", "P", "I;16")]
    batch, sources = model_inputs(images, None, (12, 10, 3))
    assert batch.shape == (5, 12, 10, 3) and batch.dtype == np.float32
    assert sources == [f"image[{i}]" for i in range(5)]


@pytest.mark.slow
def test_import_tfcnn_models_registers_the_classes_quietly(tmp_path):
    from tfcnn.models.network import build_model

    path = tmp_path / "m.keras"
    build_model("4C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0).save(path)
    code = ("import sys\nimport tfcnn.models.network\nimport keras\n"
            f"model = keras.saving.load_model({str(path)!r})\n"
            "print(type(model).__name__, model.notation)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "TFCNN_TF_LOGS"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["NotationModel", "4C3-P2-D10"]
    assert "cuda" not in done.stderr.lower(), done.stderr  # TensorFlow's start-up lines hidden


# --- tfcnn.train(data=..., class_names=..., callbacks=...) -----------------------------------


@pytest.fixture(scope="module")
def mnist_600(shared_datasets_dir):
    (x, y), (x_test, y_test), names = tfcnn.datasets.load("mnist", shared_datasets_dir)
    return x[:600], y[:600], x_test[:200], y_test[:200], names


def _recorder():
    import keras

    class Recorder(keras.callbacks.Callback):
        """Records the calls; asks to stop after the epoch `stop_after` (0-based)."""

        def __init__(self, stop_after=None):
            super().__init__()
            self.calls, self.stop_after = [], stop_after

        def on_train_begin(self, logs=None):
            self.calls.append(("train_begin", isinstance(self.model, keras.Model),
                               self.params["epochs"]))

        def on_epoch_begin(self, epoch, logs=None):
            self.calls.append(("epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(("epoch_end", epoch, dict(logs)))
            if epoch == self.stop_after:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            self.calls.append(("train_end", dict(logs)))

    return Recorder


def test_train_from_arrays_calls_keras_callbacks_and_resumes_with_the_same_arrays(
        mnist_600, tmp_path):
    x, y, _, _, names = mnist_600
    callback = _recorder()(stop_after=1)
    out = tmp_path / "run"
    run = tfcnn.train(data=(x, y), class_names=list(names), callbacks=[callback], epochs=3,
                      model="8C3-P2-D10", batch_size=32, seed=1, out=out, verbose=False)
    kinds = [c[0] for c in callback.calls]
    assert kinds == ["train_begin", "epoch_begin", "epoch_end", "epoch_begin", "epoch_end",
                     "train_end"]  # model.stop_training after epoch 1 (0-based): two epochs
    assert callback.calls[0] == ("train_begin", True, 3)
    assert [c[1] for c in callback.calls if c[0] == "epoch_end"] == [0, 1]
    logs = callback.calls[2][2]
    assert set(logs) == {"loss", "accuracy", "test_loss", "test_accuracy"}
    assert logs["accuracy"] == run.history[0]["accuracy"]
    assert callback.calls[-1][1]["test_accuracy"] == run.metrics["test_accuracy"]
    assert run.config.dataset == "arrays" and len(run.history) == 2
    saved = json.loads((out / "arrays.json").read_text())
    assert saved["class_names"] == list(names) and saved["train_images"] == [600, 28, 28]
    assert tfcnn.load(out).class_names == list(names)
    with pytest.raises(tfcnn.RunDirError, match="trained on in-memory arrays.*data=") as caught:
        tfcnn.train(resume=out, verbose=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(tfcnn.RunDirError, match="not the arrays .* was trained on"):
        tfcnn.train(resume=out, data=(x[:599], y[:599]), verbose=False)
    resumed = tfcnn.train(resume=out, data=(x, y), verbose=False)  # class names from the run
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


def test_train_from_a_tf_data_dataset_of_floats_with_a_test_set_of_its_own(mnist_600,
                                                                           tmp_path):
    import tensorflow as tf

    x, y, x_test, y_test, _ = mnist_600
    train = tf.data.Dataset.from_tensor_slices(((x / 255).astype(np.float32), y)).batch(64)
    run = tfcnn.train(data=(train, (x_test, y_test)), model="8C3-P2-D10", epochs=1, seed=2,
                      out=tmp_path / "run", verbose=False)
    saved = json.loads((tmp_path / "run" / "arrays.json").read_text())
    assert saved["class_names"] == [str(i) for i in range(10)]
    assert saved["train_images"] == [600, 28, 28] and saved["test_images"] == [200, 28, 28]
    assert 0 < run.metrics["test_accuracy"] <= 1


_LABELS = np.arange(10) % 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"data": (np.zeros((10, 8, 8), np.int64), _LABELS)}, "data: images of dtype int64"),
    ({"data": (np.zeros((10, 8)), _LABELS)}, "data: images of shape (10, 8); expected N×H×W"),
    ({"data": (np.zeros((10, 8, 8, 2), np.uint8), _LABELS)}, "with C 1 or 3"),
    ({"data": (np.full((10, 8, 8), 255.0), _LABELS)}, "values from 255 to 255; expected [0, 1]"),
    ({"data": (np.full((10, 8, 8), np.nan), _LABELS)}, "images hold NaN"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS + 2), "class_names": ["a", "b", "c"]},
     "data: label 3 of image 1 is out of range (3 class names given: labels 0 .. 2)"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS - 1)},
     "data: label -1 of image 0 is out of range"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS * 1.0)}, "labels of dtype float64"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), np.eye(10))}, "labels of shape (10, 10)"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS[:9])}, "data: 10 images but 9 labels"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS * 0)}, "one class only"),
    ({"data": ((np.zeros((10, 8, 8), np.uint8), _LABELS),
               (np.zeros((4, 9, 9), np.uint8), _LABELS[:4]))}, "test images of shape (9, 9)"),
    ({"data": 42}, "data: expected (x, y) numpy arrays"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS), "class_names": ["a", "a", "b"]},
     "class_names: ['a', 'a', 'b'] names a class twice"),
    ({"data": (np.zeros((10, 8, 8), np.uint8), _LABELS), "dataset": "mnist"},
     "dataset: not with data="),
    ({"callbacks": [print]}, "callbacks[0]: expected a keras.callbacks.Callback"),
])
def test_bad_data_and_callbacks_are_one_line_errors(kwargs, message, tmp_path):
    with pytest.raises(tfcnn.TfcnnError) as caught:
        tfcnn.train(**kwargs, model="4C3-P2-D3", out=tmp_path / "run", verbose=False)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_the_progress_bar_stays_out_of_logs_and_shows_on_a_terminal(monkeypatch):
    # Before: tqdm.auto's bar wrote "\r Epoch 1: ..." into a redirected stderr.
    import io

    from tfcnn.api.progress import progress_bars

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        bar = progress_bars(True, 3)(1, 10, 0)
        bar.update(10)
        bar.close()
        assert ("Epoch 1/3" in stream.getvalue()) is shown
        assert ("\r" in stream.getvalue()) is shown
    assert progress_bars(False, 3) is None


def test_the_cli_refuses_to_resume_a_run_trained_on_arrays(tmp_path, capsys):
    from tfcnn.cli import main
    from tfcnn.core.config import TrainConfig
    from tfcnn.core.rundir import RunDir, write_config

    write_config(RunDir(tmp_path), TrainConfig(dataset="arrays", seed=1), {})
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"tfcnn: error: {tmp_path}: trained on in-memory arrays (tfcnn.train(data="
                   f"...)); resume it from Python with the same arrays: tfcnn.train(resume="
                   f"{str(tmp_path)!r}, data=...)")
