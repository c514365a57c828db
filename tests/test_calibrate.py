"""Calibration stored in the model (issue 26): fitted at the end of training (validation
images, else training images), `tfcnn calibrate` afterwards, and used by every face."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfcnn
from tfcnn.cli import main

SMALL = dict(model="8C3-P2-D10", epochs=1, limit_train=2000, limit_test=500, seed=2,
             verbose=False)


@pytest.fixture(scope="module")
def runs(shared_datasets_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibrate")
    with_val = tfcnn.train(**SMALL, val_split=0.1, data_dir=shared_datasets_dir,
                           out=folder / "with-val")
    without = tfcnn.train(**SMALL, data_dir=shared_datasets_dir, out=folder / "without")
    return with_val.path, without.path


def test_training_stores_a_temperature_and_a_rule_fitted_on_validation(runs):
    from tfcnn.data.source import load_training_data
    from tfcnn.evaluation.calibration import fit_temperature

    clf = tfcnn.load(runs[0])
    calibration = clf.calibration
    assert calibration.ood.fitted_on == "validation" and calibration.ood.acceptance == 0.95
    # The stored temperature is the one the validation images give (recomputed here).
    data, _ = load_training_data(tfcnn.open_run(runs[0]).config)
    logits = clf.logits(data.x_val)
    assert calibration.temperature == pytest.approx(fit_temperature(logits, data.y_val),
                                                    abs=2e-3)
    accepted = float((~calibration.ood.unknown(logits)).mean())
    assert 0.95 <= accepted <= 0.95 + 2 / len(logits)


def test_without_validation_the_rule_comes_from_training_images(runs):
    calibration = tfcnn.load(runs[1]).calibration
    assert calibration.temperature == 1.0 and calibration.ood.fitted_on == "training"


def test_evaluate_reports_calibration_and_predict_marks_unknown(runs, tmp_path, capsys):
    from PIL import Image

    assert main(["evaluate", str(runs[0]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["temperature"] == tfcnn.load(runs[0]).calibration.temperature
    assert 0 <= report["ece"] <= 1 and 0 <= report["ece_uncalibrated"] <= 1
    assert (runs[0] / "report" / "reliability.png").is_file()
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)).save(noise)
    assert main(["predict", str(runs[0]), str(noise), "--json"]) == 0
    entry, = json.loads(capsys.readouterr().out)
    assert entry["unknown"] in (True, False) and entry["label"] in list("0123456789")
    expected = tfcnn.load(runs[0]).predict(str(noise))[0].unknown
    assert entry["unknown"] is expected


def test_calibrate_afterwards_on_a_dataset(runs, shared_datasets_dir, capsys):
    run = runs[1]
    assert main(["calibrate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --dataset" in err and "Traceback" not in err
    assert main(["calibrate", str(run), "--dataset", "mnist", "--data-dir",
                 str(shared_datasets_dir), "--acceptance", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "calibrated: temperature" in out and "90%" in out
    calibration = tfcnn.load(run).calibration
    assert calibration.ood.fitted_on == "mnist" and calibration.ood.acceptance == 0.9
    assert calibration.temperature != 1.0
    assert main(["calibrate", str(run), "--acceptance", "1.5"]) == 2
