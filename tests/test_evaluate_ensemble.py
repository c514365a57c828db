"""tfcnn.evaluation.ensemble: `tfcnn evaluate RUN_DIR RUN_DIR ... [--tta]`.

Two tiny runs are trained in-process on support.tiny_digits, and the test set is the same
tiny set (evaluate's `load_dataset` is patched), so no real data is needed. The expected
figures are computed here from the saved models directly (keras, numpy), not with the
module under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import SHAPES, make_shapes, tiny_digits
from tfcnn.cli import main
from tfcnn.evaluation import ensemble as ens
from tfcnn.evaluation import report as ev

FOUR_KEYS = ["test_accuracy", "test_loss", "per_class", "confusion_matrix", "ece",
             "ece_uncalibrated", "temperature", "nll", "nll_uncalibrated", "brier",
             "brier_uncalibrated"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two run directories, seeds 1 and 2, one epoch on tiny digits; and that dataset."""
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    data = tiny_digits(n_train=256, n_test=160, seed=3)
    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for seed in (1, 2):
        config = TrainConfig(model="4C3-P2-D10", epochs=1, seed=seed, batch_size=16)
        train_run(config, root / f"run{seed}", Hooks(), dataset=data)
        runs.append(root / f"run{seed}")
    return runs, data


@pytest.fixture
def tiny_test_set(tiny_runs, monkeypatch):
    runs, data = tiny_runs
    monkeypatch.setattr(ev, "load_dataset", lambda info, data_dir, **kw: data)
    return data


def _probabilities(run: Path, images: np.ndarray) -> np.ndarray:
    """The model's softmax, float64, on images scaled as training scales them."""
    from tfcnn.models.network import load_model

    model = load_model(run / "model.keras")
    logits = np.asarray(model(images[..., None].astype(np.float32) / 255.0, training=False),
                        dtype=np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    # Pad with zeros, then cut the window: an independent way to shift without wrapping.
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return padded[:, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def _tta(run: Path, images: np.ndarray) -> np.ndarray:
    shifts = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    return np.mean([_probabilities(run, _shifted(images, dy, dx)) for dy, dx in shifts], axis=0)


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels))


def _loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def _json_of(argv: list[str], capsys) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


# --- ensembles ---------------------------------------------------------------------------------

def test_ensemble_accuracy_is_that_of_the_members_mean_probabilities(tiny_runs, tiny_test_set,
                                                                     capsys):
    runs, data = tiny_runs
    printed = _json_of(["evaluate", *map(str, runs), "--json"], capsys)
    assert list(printed) == [*FOUR_KEYS, "members", "tta"]
    members = [_probabilities(run, data.x_test) for run in runs]
    mean = (members[0] + members[1]) / 2
    assert printed["test_accuracy"] == pytest.approx(_accuracy(mean, data.y_test), abs=1e-6)
    assert printed["test_loss"] == pytest.approx(_loss(mean, data.y_test), abs=1e-5)
    cm = np.array(printed["confusion_matrix"])
    assert cm.sum() == 160 and np.trace(cm) == round(160 * printed["test_accuracy"])
    assert np.array_equal(cm.diagonal(), np.bincount(
        data.y_test[mean.argmax(axis=1) == data.y_test], minlength=10))
    assert printed["tta"] is None
    for member, run, probs in zip(printed["members"], runs, members, strict=True):
        assert member["model_file"] == str(run / "model.keras")
        assert member["test_accuracy"] == pytest.approx(_accuracy(probs, data.y_test), abs=1e-6)
        assert member["test_loss"] == pytest.approx(_loss(probs, data.y_test), abs=1e-5)
    # The default report folder is beside the first run's own report/, not over it.
    saved = json.loads((runs[0] / "report-ensemble" / "evaluation.json").read_text())
    assert saved["test_accuracy"] == printed["test_accuracy"] and len(saved["members"]) == 2
    assert (runs[0] / "report-ensemble" / "worst_images.png").is_file()
    assert not (runs[0] / "report-ensemble" / "training_curves.png").exists()
    assert not (runs[0] / "report").exists()


def test_the_text_report_says_ensemble_and_lists_each_member(tiny_runs, tiny_test_set, capsys,
                                                             tmp_path):
    runs, data = tiny_runs
    assert main(["evaluate", *map(str, runs), "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "Ensemble of 2 models: their class probabilities are averaged"
    for i, run in enumerate(runs, start=1):
        own = 100 * _accuracy(_probabilities(run, data.x_test), data.y_test)
        assert lines[i].startswith(f"Member {i}: test accuracy {own:.2f}%, test loss ")
        assert lines[i].endswith(f"({run / 'model.keras'})")
    assert lines[3].startswith("Data: mnist test set") and lines[4].startswith("Test accuracy")
    assert (tmp_path / "r" / "evaluation.txt").read_text() == text


# --- test-time augmentation ---------------------------------------------------------------------

def test_tta_of_one_model_averages_its_shifted_copies(tiny_runs, tiny_test_set, capsys):
    runs, data = tiny_runs
    printed = _json_of(["evaluate", str(runs[0]), "--tta", "--json"], capsys)
    assert list(printed) == [*FOUR_KEYS, "members", "tta"]
    assert printed["tta"] == {"shifts": [[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]],
                              "mirror": False}  # these runs trained without --hflip
    tta, plain = _tta(runs[0], data.x_test), _probabilities(runs[0], data.x_test)
    assert printed["test_accuracy"] == pytest.approx(_accuracy(tta, data.y_test), abs=1e-6)
    assert printed["test_loss"] == pytest.approx(_loss(tta, data.y_test), abs=1e-5)
    member, = printed["members"]
    assert member["test_accuracy"] == pytest.approx(_accuracy(plain, data.y_test), abs=1e-6)
    assert member["tta_test_loss"] == printed["test_loss"]
    # TTA changed the probabilities (the loss moved) but the report is still a sane one.
    assert abs(printed["test_loss"] - member["test_loss"]) > 1e-4
    assert 0 <= printed["test_accuracy"] <= 1 and np.sum(printed["confusion_matrix"]) == 160
    report = json.loads((runs[0] / "report-tta" / "evaluation.json").read_text())
    assert report["model_file"] == str(runs[0] / "model.keras")
    assert (runs[0] / "report-tta" / "training_curves.png").is_file()  # one model: its curves
    text = (runs[0] / "report-tta" / "evaluation.txt").read_text()
    assert "TTA: probabilities averaged over 5 copies" in text and "Without TTA: " in text


def test_tta_of_an_ensemble_averages_per_model_then_across(tiny_runs, tiny_test_set, capsys,
                                                           tmp_path):
    runs, data = tiny_runs
    printed = _json_of(["evaluate", *map(str, runs), "--tta", "--json", "--out",
                        str(tmp_path / "r")], capsys)
    mean = (_tta(runs[0], data.x_test) + _tta(runs[1], data.x_test)) / 2
    assert printed["test_accuracy"] == pytest.approx(_accuracy(mean, data.y_test), abs=1e-6)
    assert [set(m) for m in printed["members"]] == [
        {"model_file", "test_accuracy", "test_loss", "tta_test_accuracy", "tta_test_loss",
         "tta_mirror"}] * 2


def test_one_model_without_tta_keeps_the_plain_report(tiny_runs, tiny_test_set, capsys):
    runs, _ = tiny_runs
    printed = _json_of(["evaluate", str(runs[1]), "--json"], capsys)
    assert list(printed) == FOUR_KEYS
    report = json.loads((runs[1] / "report" / "evaluation.json").read_text())
    assert "members" not in report and report["model_file"] == str(runs[1] / "model.keras")


# --- members that do not fit together -----------------------------------------------------------

def _save_model(path: Path, shape=(28, 28, 1), names=tuple("0123456789"), dataset="mnist"):
    from tfcnn.models.network import build_model

    path.parent.mkdir(parents=True, exist_ok=True)
    build_model(f"4C3-P2-D{len(names)}", shape, tuple(names), seed=0, dataset=dataset).save(path)
    return path


@pytest.mark.parametrize(("other", "expected"), [
    ({"dataset": "fashion_mnist"}, "dataset 'fashion_mnist', but 'mnist' for "),
    ({"names": tuple("abcdefghij")}, "class names ['a', "),
    ({"shape": (32, 32, 1)}, "image shape (32, 32, 1), but (28, 28, 1) for "),
])
def test_mismatched_members_are_one_line_naming_the_member(tmp_path, tiny_test_set, capsys,
                                                           other, expected):
    first = _save_model(tmp_path / "a" / "model.keras")
    second = _save_model(tmp_path / "b" / "model.keras", **other)
    assert main(["evaluate", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"tfcnn: error: {second}: ") and str(first) in captured.err
    assert expected in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "a" / "report-ensemble").exists()


def test_folder_runs_holding_out_other_images_are_refused(tmp_path, capsys):
    from tfcnn.core.config import TrainConfig
    from tfcnn.core.rundir import RunDir, write_config

    root = make_shapes(tmp_path / "shapes", per_class=6)
    for seed in (1, 2):  # the same folder, split with two seeds: other held-out images
        run = RunDir(tmp_path / f"run{seed}")
        _save_model(run.model, shape=(20, 20, 3), names=SHAPES, dataset=f"folder:{root}")
        write_config(run, TrainConfig(dataset=f"folder:{root}", model="4C3-P2-D3", seed=seed,
                                      image_size="20", grayscale=False, test_split=0.5), {})
    assert main(["evaluate", str(tmp_path / "run1"), str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run2/model.keras: tested on other images than" in err


def test_default_report_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert ens.default_report_dir(run, 2, False) == run / "report-ensemble"
    assert ens.default_report_dir(run, 1, True) == run / "report-tta"
    assert ens.default_report_dir(run / "model.keras", 3, True) == run / "report-ensemble-tta"


def test_tta_adds_mirrored_views_for_a_run_trained_with_hflip(tiny_test_set, tmp_path, capsys):
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    data = tiny_test_set
    config = TrainConfig(model="4C3-P2-D10", epochs=1, seed=4, batch_size=16, hflip=True)
    run = train_run(config, tmp_path / "mirrored", Hooks(), dataset=data).run_dir
    printed = _json_of(["evaluate", str(run), "--tta", "--json"], capsys)
    assert printed["tta"]["mirror"] is True
    mirrored = _tta(run, data.x_test[:, :, ::-1])
    expected = (_tta(run, data.x_test) + mirrored) / 2
    assert printed["test_accuracy"] == pytest.approx(_accuracy(expected, data.y_test), abs=1e-6)
    assert printed["test_loss"] == pytest.approx(_loss(expected, data.y_test), abs=1e-5)


def test_tta_leaves_out_mirrored_views_for_a_mirror_invariant_network(tiny_test_set, tmp_path,
                                                                      capsys):
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    data = tiny_test_set
    config = TrainConfig(model="4M3-P2-D10", epochs=1, seed=4, batch_size=16, hflip=True)
    run = train_run(config, tmp_path / "invariant", Hooks(), dataset=data).run_dir
    printed = _json_of(["evaluate", str(run), "--tta", "--json"], capsys)
    assert printed["tta"]["mirror"] is False  # they would repeat the plain views
    assert printed["test_accuracy"] == pytest.approx(
        _accuracy(_tta(run, data.x_test), data.y_test), abs=1e-6)
    np.testing.assert_allclose(_tta(run, data.x_test[:, :, ::-1]), _tta(run, data.x_test),
                               atol=1e-5)
