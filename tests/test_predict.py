"""`tfcnn predict` (tfcnn.predict): inputs, batching, error entries, output formats, accuracy.

The accuracy tests read digits drawn by support.digit_set with the trained tutorial
network: MNIST-style preprocessing must read them, a naive resize must not.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import digit_set, draw_digit, run_tfcnn
from tfcnn.core.errors import ConfigError
from tfcnn.predict import answers as predict_run
from tfcnn.predict import expand_inputs, format_csv, format_table
from tfcnn.predict import predict_files as predict_loaded


def predict_files(model_file, paths, **options):
    """predict_files on the model in `model_file`, loaded by the one loader."""
    from tfcnn.models.trained import TrainedModel

    return predict_loaded(TrainedModel.load(model_file), paths, **options)

NAMES = tuple("abcdefghij")


def _write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        draw_digit(i % 10, canvas=(80, 60), size=50).save(path)
        paths.append(path)
    return paths


# --- expand_inputs (no TensorFlow) ----------------------------------------------------------


def test_expand_inputs_files_folders_and_globs_in_order(tmp_path):
    one, = _write_images(tmp_path, ["one.png"])
    _write_images(tmp_path / "dir", ["b.jpg", "a.PNG", "c.webp"])
    (tmp_path / "dir" / "notes.txt").write_text("not an image")
    (tmp_path / "dir" / ".hidden.png").write_bytes(b"")
    _write_images(tmp_path / "dir" / "sub", ["deep.bmp"])
    _write_images(tmp_path / "glob", ["x2.gif", "x1.png", "y.png"])
    found = expand_inputs([str(tmp_path / "dir"), str(tmp_path / "glob" / "x*"), str(one),
                           str(tmp_path / "dir" / "a.PNG")])  # a duplicate: kept once
    # A folder gives its images, then its sub-folders' (one sub-folder per class).
    assert found == [tmp_path / "dir" / "a.PNG", tmp_path / "dir" / "b.jpg",
                     tmp_path / "dir" / "c.webp", tmp_path / "dir" / "sub" / "deep.bmp",
                     tmp_path / "glob" / "x1.png",
                     tmp_path / "glob" / "x2.gif", one]
    recursive = expand_inputs([str(tmp_path / "dir" / "**" / "*.bmp")])
    assert recursive == [tmp_path / "dir" / "sub" / "deep.bmp"]


def test_expand_inputs_keeps_what_matches_nothing_for_the_report(tmp_path):
    one, = _write_images(tmp_path, ["one.png"])
    (tmp_path / "empty").mkdir()
    missing, pattern, empty = (str(tmp_path / "nope.png"), str(tmp_path / "*.tiff"),
                               str(tmp_path / "empty"))
    assert expand_inputs([missing, str(one), pattern, empty]) == [missing, one, pattern, empty]


def test_expand_inputs_with_nothing_found_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no image files found in") as caught:
        expand_inputs([str(tmp_path / "nope.png"), str(tmp_path / "*.jpg")])
    assert "\n" not in str(caught.value) and "nope.png" in str(caught.value)
    with pytest.raises(ConfigError):
        expand_inputs([])


# --- formats --------------------------------------------------------------------------------

RESULTS = [
    {"file": "a.png", "label": "7", "index": 7, "probability": 0.981,
     "top_k": [{"label": "7", "probability": 0.981}, {"label": "1", "probability": 0.012}]},
    {"file": "bad, file.png", "error": "bad, file.png: not a PNG, JPEG, BMP, GIF or WebP image"},
]


def test_format_table_aligns_rows_and_counts_failures():
    lines = format_table(RESULTS).splitlines()
    assert lines[0].split() == ["file", "label", "probability", "top", "2"]
    assert lines[1].split() == ["a.png", "7", "98.1%", "7", "98.1%", "1", "1.2%"]
    assert "error" in lines[2] and "not a PNG" in lines[2]
    assert lines[-1] == "1 predicted, 1 failed"
    assert lines[1].index("7") == lines[2].index("error")  # the label column lines up


def test_format_csv_has_top_k_pairs_and_an_error_column():
    rows = list(csv.reader(io.StringIO(format_csv(RESULTS))))
    assert rows[0] == ["file", "label", "index", "probability", "label_1", "probability_1",
                       "label_2", "probability_2", "error"]
    assert rows[1] == ["a.png", "7", "7", "0.981", "7", "0.981", "1", "0.012", ""]
    assert rows[2][0] == "bad, file.png" and rows[2][-1].endswith("WebP image")
    assert rows[2][1:-1] == [""] * 7


# --- predict_files with a small untrained model ----------------------------------------------


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("model") / "small.keras"
    build_model("4C3-P2-D10", (28, 28, 1), NAMES, seed=0, prepare="mnist").save(path)
    return path


def test_predict_files_keeps_order_across_batches_and_reports_bad_files(tmp_path, monkeypatch,
                                                                        small_model):
    monkeypatch.setattr(predict_run, "BATCH_SIZE", 3)
    good = _write_images(tmp_path, [f"d{i}.png" for i in range(7)])
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty").mkdir()
    entries = [good[0], tmp_path / "zero.png", *good[1:4], str(tmp_path / "missing.png"),
               tmp_path / "text.jpg", *good[4:], str(tmp_path / "*.tiff"),
               str(tmp_path / "empty")]
    results = predict_files(small_model, entries, top_k=3)
    assert [r["file"] for r in results] == [str(e) for e in entries]
    errors = {Path(r["file"]).name: r["error"] for r in results if "error" in r}
    assert errors == {
        "zero.png": f"{tmp_path / 'zero.png'}: empty file (0 bytes)",
        "missing.png": f"{tmp_path / 'missing.png'}: no such file",
        "text.jpg": f"{tmp_path / 'text.jpg'}: not a PNG, JPEG, BMP, GIF or WebP image",
        "*.tiff": f"{tmp_path / '*.tiff'}: pattern matches no image files",
        "empty": f"{tmp_path / 'empty'}: folder holds no PNG, JPEG, BMP, GIF or WebP files"}
    predicted = [r for r in results if "error" not in r]
    assert len(predicted) == 7
    for r in predicted:
        assert set(r) == {"file", "label", "index", "probability", "unknown", "top_k"}
        assert r["label"] == NAMES[r["index"]] == r["top_k"][0]["label"]
        assert r["probability"] == r["top_k"][0]["probability"]
        probs = [t["probability"] for t in r["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    # Batching must not change an image's answer.
    alone = predict_files(small_model, [good[5]], top_k=3)[0]
    assert alone["top_k"] == next(r for r in predicted if r["file"] == str(good[5]))["top_k"]
    json.dumps(results)  # plain types only


def test_top_k_is_capped_at_the_number_of_classes(tmp_path, small_model):
    result, = predict_files(small_model, _write_images(tmp_path, ["a.png"]), top_k=50)
    assert len(result["top_k"]) == 10
    assert sum(t["probability"] for t in result["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_scale_models_get_their_own_input_size_and_channels(tmp_path):
    from tfcnn.models.network import build_model

    path = tmp_path / "colour.keras"
    build_model("4C3-P2-D3", (20, 24, 3), ("cat", "dog", "fox"), seed=0).save(path)
    images = [tmp_path / "rgba.png", tmp_path / "grey.jpg"]
    Image.new("RGBA", (50, 30), (200, 10, 10, 128)).save(images[0])
    Image.new("L", (300, 500), 90).save(images[1])
    results = predict_files(path, images, top_k=2, preprocess=True)
    assert all(r["label"] in ("cat", "dog", "fox") and len(r["top_k"]) == 2 for r in results)


# --- --tta -------------------------------------------------------------------------------------


def _shift(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    # Zero padding, then the shifted window: independent of tfcnn.models.tta's slicing.
    h, w = batch.shape[1:3]
    padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return padded[:, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def test_tta_averages_the_prepared_image_and_its_one_pixel_shifts(tmp_path, small_model,
                                                                  capsys):
    from support import probabilities
    from tfcnn.cli import main
    from tfcnn.images.decode import load_image
    from tfcnn.images.prepare import prepare
    from tfcnn.models.network import load_model

    paths = _write_images(tmp_path, ["a.png", "b.jpg", "c.png"])
    model = load_model(small_model)
    batch = np.stack([prepare(load_image(p), "mnist", (28, 28, 1)) for p in paths])
    copies = [_shift(batch, dy, dx) for dy, dx in [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]]
    expected = np.mean([np.asarray(probabilities(model, c), np.float64) for c in copies], axis=0)
    plain = np.asarray(probabilities(model, batch), np.float64)
    assert not np.allclose(expected, plain, atol=1e-4)  # the shifts do change the answer

    results = predict_files(small_model, paths, top_k=10, tta=True)
    for result, row in zip(results, expected, strict=True):
        assert result["index"] == int(row.argmax())
        got = {t["label"]: t["probability"] for t in result["top_k"]}
        assert [got[name] for name in NAMES] == pytest.approx(row.tolist(), abs=1e-6)
    # Without --tta, the plain probabilities, as before.
    for result, row in zip(predict_files(small_model, paths, top_k=1), plain, strict=True):
        assert result["probability"] == pytest.approx(row.max(), abs=1e-6)
    # The CLI flag gives the same answers.
    assert main(["predict", str(small_model), *map(str, paths), "--tta", "--json",
                 "--top-k", "10"]) == 0
    assert json.loads(capsys.readouterr().out) == results


# --- the trained network on drawn digits -----------------------------------------------------


def _save_digit_set(folder: Path, count: int = 50) -> tuple[list[Path], list[int]]:
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i, (digit, image) in enumerate(digit_set(count, seed=0)):
        suffix = ("png", "jpg", "webp")[i % 3]
        path = folder / f"{i:02d}-digit{digit}.{suffix}"
        image.save(path, **({"quality": 90} if suffix != "png" else {}))
        paths.append(path)
        labels.append(digit)
    return paths, labels


@pytest.mark.slow
def test_trained_model_reads_drawn_and_printed_digits(trained_mnist_run, tmp_path):
    paths, labels = _save_digit_set(tmp_path / "digits")
    model_file = trained_mnist_run / "model.keras"
    accuracy = {}
    for preprocess in (True, False):
        results = predict_files(model_file, paths, preprocess=preprocess)
        hits = [r["index"] == label for r, label in zip(results, labels, strict=True)]
        accuracy[preprocess] = float(np.mean(hits))
    assert accuracy[True] >= 0.85, accuracy
    assert accuracy[False] <= 0.35 and accuracy[True] - accuracy[False] >= 0.4, accuracy


@pytest.mark.slow
def test_cli_predict_outputs_and_exit_statuses(trained_mnist_run, tmp_path):
    paths, labels = _save_digit_set(tmp_path / "digits", count=10)
    (tmp_path / "digits" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run = str(trained_mnist_run)

    table = run_tfcnn("predict", run, str(tmp_path / "digits" / "*.png"))
    assert table.returncode == 1, table.stderr  # broken.png failed
    assert "broken.png: " in table.stdout and table.stdout.rstrip().endswith("1 failed")

    listed = run_tfcnn("predict", run, *map(str, paths), "--json", "--top-k", "2")
    assert listed.returncode == 0, listed.stderr
    results = json.loads(listed.stdout)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    assert sum(r["label"] == str(label) for r, label in zip(results, labels, strict=True)) >= 6
    assert all(len(r["top_k"]) == 2 for r in results)

    rows = list(csv.reader(io.StringIO(
        run_tfcnn("predict", run, str(tmp_path / "digits"), "--csv").stdout)))
    assert rows[0][:4] == ["file", "label", "index", "probability"] and len(rows) == 12

    nothing = run_tfcnn("predict", run, str(tmp_path / "none-*.png"))
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert nothing.stderr.strip().startswith("tfcnn: error: no image files found in")


@pytest.mark.slow
def test_expanding_inputs_does_not_import_tensorflow(tmp_path):
    _write_images(tmp_path, ["a.png"])
    code = ("import sys\n"
            "from tfcnn.predict import expand_inputs\n"
            f"assert len(expand_inputs([{str(tmp_path)!r}])) == 1\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "print('light')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "light" in done.stdout, done.stderr


def test_class_folders_give_expected_labels_and_an_accuracy_line(tmp_path, small_model):
    from tfcnn.predict import expected_labels

    root = tmp_path / "sorted"
    files = _write_images(root / "a", ["1.png", "2.png"]) + _write_images(root / "b" / "deep",
                                                                           ["3.png"])
    files += _write_images(root / "zzz", ["4.png"])  # not one of the model's classes
    loose = _write_images(root, ["loose.png"])[0]    # directly in the folder: no class
    paths = expand_inputs([str(root)])
    assert set(paths) == {*files, loose}
    expected = expected_labels([str(root)], paths)
    assert expected == {files[0]: "a", files[1]: "a", files[2]: "b", files[3]: "zzz"}
    results = predict_files(small_model, paths, top_k=1, expected=expected)
    by_file = {r["file"]: r for r in results}
    assert by_file[str(files[0])]["expected"] == "a"
    assert by_file[str(files[2])]["correct"] == (by_file[str(files[2])]["label"] == "b")
    assert "expected" not in by_file[str(files[3])] and "expected" not in by_file[str(loose)]
    correct = sum(r.get("correct", False) for r in results)
    assert format_table(results).splitlines()[-1] == (
        f"Accuracy on 3 images in class folders: {100 * correct / 3:.2f}% ({correct} correct)")
