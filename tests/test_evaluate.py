"""tfcnn.evaluation.report: metric helpers on hand-made arrays, the text report, input checks, and
`tfcnn evaluate` on a trained MNIST run (slow) agreeing with what training measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import SHAPES, make_shapes, run_tfcnn, tiny_digits
from tfcnn.cli import main
from tfcnn.core.errors import ConfigError, ModelSpecError, RunDirError
from tfcnn.evaluation import report as ev


def evaluate_model(model_file, *, out_dir=None, **options):
    """Load `model_file` by the one loader, evaluate it, write its report folder (default
    beside it, report/), return the report."""
    from tfcnn.models.trained import TrainedModel

    model_file = Path(model_file)
    evaluation = ev.evaluate_loaded(TrainedModel.load(model_file), **options)
    return evaluation.write(Path(out_dir) if out_dir is not None
                            else model_file.parent / "report")


MNIST_TEST_SUPPORT = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- the text report ---------------------------------------------------------------------

def _report(names, cm):
    per_class = ev.per_class_metrics(cm, names)
    return {"model_file": "m.keras", "dataset": "fashion_mnist", "data_source": "/data",
            "num_images": int(np.sum(cm)), "test_accuracy": np.trace(cm) / np.sum(cm),
            "test_loss": 0.25, "per_class": per_class, "averages": ev.average_metrics(per_class),
            "confusion_matrix": np.asarray(cm).tolist(),
            "most_confused": ev.most_confused(cm, names),
            "files": {"confusion_matrix": "report/confusion_matrix.png"}}


def test_format_evaluation_has_every_section_aligned():
    names = ["T-shirt/top", "Trouser", "Ankle boot"]
    text = ev.format_evaluation(_report(names, [[90, 0, 10], [2, 98, 0], [0, 0, 100]]))
    assert "Test accuracy 96.00% (288 of 300 correct), test loss 0.2500" in text
    lines = text.splitlines()
    table = lines[lines.index("Per class:") + 1:]
    assert table[0].split() == ["class", "precision", "recall", "f1", "support"]
    # Numbers are right-aligned under their headers: every row ends at the same column.
    assert len({len(line) for line in table[:6]}) == 1
    assert table[1].startswith("T-shirt/top") and table[1].split()[1:] == [
        "0.9783", "0.9000", "0.9375", "100"]
    # Long class names: the matrix's columns carry indexes, its rows index and name.
    start = next(i for i, line in enumerate(lines) if line.startswith("Confusion matrix"))
    assert lines[start + 1].split()[-3:] == ["0", "1", "2"]
    assert lines[start + 2].split() == ["0", "T-shirt/top", "90", "0", "10"]
    assert "  T-shirt/top -> Ankle boot: 10 images" in text
    assert "report/confusion_matrix.png" in text


def test_format_evaluation_of_a_perfect_model():
    text = ev.format_evaluation(_report(["0", "1"], [[5, 0], [0, 5]]))
    assert "none: every image is classified right" in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Confusion matrix"))
    assert [line.split() for line in lines[start + 1:start + 4]] == [
        ["true", "\\", "predicted", "0", "1"], ["0", "5", "0"], ["1", "0", "5"]]


# --- evaluate_model on tiny models (no real data needed) --------------------------------

def _save_model(tmp_path, notation="4C3-P2-D10", classes=10, shape=(28, 28, 1),
                dataset="mnist", name="m.keras", names=None):
    from tfcnn.models.network import build_model

    names = tuple(names or (str(i) for i in range(classes)))
    model = build_model(notation, shape, names, seed=0, dataset=dataset)
    path = tmp_path / name
    model.save(path)
    return path


def test_other_class_names_of_the_same_count_are_refused(tmp_path, capsys):
    # An MNIST model on Fashion-MNIST: ten outputs each, but other classes.
    path = _save_model(tmp_path)
    with pytest.raises(ModelSpecError, match=r"classes \['0', '1'.* are not fashion_mnist's "
                                             r"\['T-shirt/top'"):
        evaluate_model(path, dataset="fashion_mnist", data_dir=str(tmp_path / "none"))
    assert main(["evaluate", str(path), "--dataset", "fashion_mnist"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_wrong_class_count_is_refused_before_loading_data(tmp_path, capsys):
    path = _save_model(tmp_path, "4C3-P2-D5", classes=5)
    with pytest.raises(ModelSpecError, match="gives 5 class outputs, but dataset 'mnist' has 10"):
        evaluate_model(path, data_dir=str(tmp_path / "nowhere"))
    assert main(["evaluate", str(path), "--dataset", "fashion_mnist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset 'fashion_mnist' has 10 classes" in err


def test_wrong_image_shape_is_refused(tmp_path):
    path = _save_model(tmp_path, shape=(32, 32, 1))
    with pytest.raises(ModelSpecError, match=r"images of shape \(32, 32, 1\)"):
        evaluate_model(path)


def test_a_model_without_dataset_needs_dataset_flag(tmp_path, capsys):
    path = _save_model(tmp_path, dataset="")
    with pytest.raises(ConfigError, match="records no dataset; pass --dataset"):
        evaluate_model(path)
    assert main(["evaluate", str(path), "--dataset", "cifar"]) == 2
    assert "dataset 'cifar' is unknown" in capsys.readouterr().err


def test_a_file_that_is_not_a_model_is_one_error(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    with pytest.raises(RunDirError, match="bad.keras: not a Keras model file \\(not a zip archive"):
        evaluate_model(bad)
    assert main(["evaluate", str(tmp_path / "missing.keras")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory or model file" in err


def test_evaluate_a_bare_model_file_on_small_data(tmp_path, monkeypatch):
    data = tiny_digits(n_test=64)
    monkeypatch.setattr(ev, "load_dataset", lambda info, data_dir, **kw: data)
    path = _save_model(tmp_path)
    report = evaluate_model(path)
    assert report["num_images"] == 64 and report["dataset"] == "mnist"
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == 64 and cm.sum(axis=1).tolist() == np.bincount(data.y_test, minlength=10
                                                                      ).tolist()
    assert report["test_accuracy"] == pytest.approx(np.trace(cm) / 64)
    assert 0 < report["test_loss"] < 10
    # No run directory: no training curves; the report folder sits beside the model.
    assert set(report["files"]) == {"confusion_matrix", "worst_images", "reliability", "json",
                                   "text"}
    for file in report["files"].values():
        assert Path(file).parent == tmp_path / "report" and Path(file).is_file()
    saved = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert saved["confusion_matrix"] == report["confusion_matrix"]
    worst = [w["loss"] for w in report["worst_images"]]
    assert len(worst) == 25 and worst == sorted(worst, reverse=True)


# --- image-folder datasets -----------------------------------------------------------------

def test_a_folder_is_evaluated_whole_at_the_models_size(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=4)
    path = _save_model(tmp_path, "4C3-P2-D3", classes=3, shape=(20, 24, 3),
                       dataset=f"folder:{root}", names=SHAPES)
    report = evaluate_model(path, out_dir=tmp_path / "r")
    assert report["num_images"] == 12 and report["dataset"] == f"folder:{root}"
    assert [r["class"] for r in report["per_class"]] == list(SHAPES)
    assert [r["support"] for r in report["per_class"]] == [4, 4, 4]
    assert (tmp_path / "r" / "worst_images.png").is_file()


def test_a_folder_with_other_class_names_is_refused(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=2)
    path = _save_model(tmp_path, "4C3-P2-D3", classes=3, dataset=f"folder:{root}")
    with pytest.raises(ModelSpecError, match="differ from .*sub-folders"):
        evaluate_model(path)


@pytest.mark.slow
def test_a_folder_run_is_evaluated_on_its_held_out_split(tmp_path):
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    root = make_shapes(tmp_path / "shapes", per_class=10)
    config = TrainConfig(dataset=f"folder:{root}", model="4C3-P2-D3", epochs=2, seed=3,
                         batch_size=4, grayscale=False, test_split=0.2)
    train_run(config, tmp_path / "run", Hooks())
    last = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"][-1]
    report = evaluate_model(tmp_path / "run" / "model.keras")
    assert report["num_images"] == 6  # 2 of each class's 10 held out
    assert abs(report["test_accuracy"] - last["test_accuracy"]) <= 1e-4
    assert abs(report["test_loss"] - last["test_loss"]) <= 1e-4
    assert "training_curves" in report["files"]


def test_evaluating_on_other_data_keeps_the_models_own_report(tmp_path, capsys):
    """Issue 25.6: `evaluate RUN --dataset folder:OTHER` used to overwrite RUN/report/."""
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    root = make_shapes(tmp_path / "shapes", per_class=10)
    other = make_shapes(tmp_path / "more-shapes", per_class=4)
    config = TrainConfig(dataset=f"folder:{root}", model="4C3-P2-D3", epochs=1, seed=3,
                         batch_size=4, grayscale=False, test_split=0.2)
    run = tmp_path / "run"
    train_run(config, run, Hooks())
    assert main(["evaluate", str(run), "--json"]) == 0
    own = json.loads((run / "report" / "evaluation.json").read_text())
    assert own["num_images"] == 6
    assert main(["evaluate", str(run), "--dataset", f"folder:{other}", "--json"]) == 0
    assert json.loads((run / "report" / "evaluation.json").read_text()) == own  # kept
    elsewhere = json.loads((run / "report-folder-more-shapes" / "evaluation.json").read_text())
    assert elsewhere["num_images"] == 12
    # Naming the model's own folder writes its own report, as without --dataset.
    assert main(["evaluate", str(run), "--dataset", f"folder:{root}", "--json"]) == 0
    assert not (run / "report-folder-shapes").exists()
    capsys.readouterr()


# --- a real trained run ------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_agrees_with_training_on_the_trained_run(trained_mnist_run, tmp_path):
    metrics = json.loads((trained_mnist_run / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    # No data_dir: it comes from the run's config.json.
    report = evaluate_model(trained_mnist_run / "model.keras", out_dir=tmp_path / "r")
    assert abs(report["test_accuracy"] - metrics["test_accuracy"]) <= 1e-4
    assert abs(report["test_loss"] - last["test_loss"]) <= 1e-4
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == 10000 and cm.sum(axis=1).tolist() == MNIST_TEST_SUPPORT
    assert [r["support"] for r in report["per_class"]] == MNIST_TEST_SUPPORT
    assert len(report["most_confused"]) == 5
    assert set(report["files"]) == {"confusion_matrix", "worst_images", "training_curves",
                                    "reliability", "json", "text"}
    for name in ("confusion_matrix.png", "worst_images.png", "training_curves.png",
                 "reliability.png",
                 "evaluation.json", "evaluation.txt"):
        assert (tmp_path / "r" / name).stat().st_size > 1000
    assert not (trained_mnist_run / "report").exists()


@pytest.mark.slow
def test_cli_json_and_text(trained_mnist_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_mnist_run, run)
    done = run_tfcnn("evaluate", str(run), "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert list(printed) == ["test_accuracy", "test_loss", "per_class", "confusion_matrix",
                             "ece", "ece_uncalibrated", "temperature", "nll",
                             "nll_uncalibrated", "brier", "brier_uncalibrated"]
    assert abs(printed["test_accuracy"] - json.loads(
        (run / "metrics.json").read_text())["test_accuracy"]) <= 1e-4
    assert (run / "report" / "training_curves.png").is_file()
    done = run_tfcnn("evaluate", str(run / "model.keras"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "Test accuracy" in done.stdout and "Most confused" in done.stdout
    assert str(tmp_path / "out" / "confusion_matrix.png") in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("make", "extra", "expected"), [
    (lambda p: p / "nonexistent", [], "no such run directory or model file"),
    (lambda p: _save_model(p, "4C3-P2-D5", classes=5), ["--dataset", "mnist"],
     "gives 5 class outputs"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, make, extra, expected):
    done = run_tfcnn("evaluate", str(make(tmp_path)), *extra)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("tfcnn: error: ")
    assert expected in done.stderr and "Traceback" not in done.stderr
