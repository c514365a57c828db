"""tfcnn.training.ensemble: `tfcnn train --ensemble N`, resuming it, and ensemble directories as
`tfcnn evaluate` arguments. The slow tests train two tiny members on the real MNIST files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import load_weights, same_weights
from tfcnn.cli import main
from tfcnn.core.errors import ConfigError, RunDirError, TrainingInterrupted
from tfcnn.training import ensemble
from tfcnn.training.ensemble import ensemble_size, read_ensemble, resolve_model_files

TINY = ["--limit-train", "512", "--limit-test", "256", "--epochs", "1", "--model", "4C3-P2-D10"]


def _fake_ensemble(root: Path, size: int = 2) -> Path:
    """An ensemble directory as training leaves it, with empty stand-in model files."""
    for k in range(1, size + 1):
        (root / f"member-{k}").mkdir(parents=True)
        (root / f"member-{k}" / "model.keras").write_bytes(b"")
    members = [{"path": f"member-{k}", "seed": 6 + k, "test_accuracy": None}
               for k in range(1, size + 1)]
    (root / "ensemble.json").write_text(json.dumps({"size": size, "members": members}))
    return root


# --- directories and flags (no TensorFlow) ------------------------------------------------------

def test_an_ensemble_directory_gives_its_members_models(tmp_path):
    ens = _fake_ensemble(tmp_path / "ens", 3)
    other = tmp_path / "other.keras"
    other.write_bytes(b"")
    assert resolve_model_files([str(ens), str(other)]) == [
        ens / "member-1" / "model.keras", ens / "member-2" / "model.keras",
        ens / "member-3" / "model.keras", other]
    with pytest.raises(ConfigError, match="given more than once"):
        resolve_model_files([str(ens), str(ens / "member-2")])
    (ens / "member-3" / "model.keras").unlink()
    with pytest.raises(RunDirError, match="member-3: no model.keras"):
        resolve_model_files([str(ens)])


@pytest.mark.parametrize("content", ["{", "[]", '{"size": 2, "members": [{"path": "a"}]}',
                                     '{"size": 0, "members": []}'])
def test_a_damaged_ensemble_json_is_one_error(tmp_path, content):
    (tmp_path / "ensemble.json").write_text(content)
    with pytest.raises(RunDirError, match="ensemble.json: "):
        read_ensemble(tmp_path)


def test_ensemble_size_from_the_flag_or_the_resumed_directory(tmp_path):
    ens = _fake_ensemble(tmp_path / "ens", 3)
    assert ensemble_size(None, None) is None and ensemble_size(4, None) == 4
    assert ensemble_size(None, ens) == 3 and ensemble_size(3, ens) == 3
    assert ensemble_size(None, tmp_path / "plain-run") is None
    with pytest.raises(ConfigError, match="is an ensemble of 3"):
        ensemble_size(2, ens)
    with pytest.raises(ConfigError, match="holds no ensemble.json"):
        ensemble_size(2, tmp_path / "plain-run")


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), [
    (["--ensemble", "0"], "--ensemble: expected a positive integer, got 0"),
    (["--ensemble", "-2"], "--ensemble: expected a positive integer, got -2"),
    (["--ensemble", "2", "--dataset", "folder:."],
     "--ensemble: not for an image folder without its own test/"),
])
def test_bad_ensemble_flags_fail_fast_without_tensorflow(argv, message):
    code = ("import sys\nfrom tfcnn.cli import main\n"
            f"status = main(['train', *{argv!r}])\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
            "sys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CONFIG": ""})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"tfcnn: error: {message}") and done.stderr.count("\n") == 1


def test_an_interrupted_member_says_how_to_resume_the_ensemble(tmp_path, monkeypatch):
    from tfcnn.core.config import TrainConfig
    from tfcnn.training import run
    from tfcnn.training.loop import Hooks

    def interrupted(config, path, hooks, **kwargs):
        raise TrainingInterrupted(f"interrupted in epoch 1 after step 3/16; checkpoint saved "
                                  f"to x; continue with: tfcnn train --resume {path}", 2)

    monkeypatch.setattr(run, "train_run", interrupted)
    with pytest.raises(TrainingInterrupted) as caught:
        ensemble.train_ensemble(TrainConfig(seed=3, strategy="default"), tmp_path / "ens", 2,
                                Hooks())
    assert caught.value.exit_code == 130
    assert str(caught.value) == ("ensemble member 1/2: interrupted in epoch 1 after step 3/16; "
                                 "checkpoint saved to x; continue the ensemble with: tfcnn "
                                 f"train --resume {tmp_path / 'ens'}")
    plan = read_ensemble(tmp_path / "ens")  # written before the first member started
    assert [m["seed"] for m in plan["members"]] == [3, 4] and plan["test_accuracy"] is None


# --- a real tiny ensemble ------------------------------------------------------------------------

def _mean_probabilities(ens: Path, images: np.ndarray, size: int) -> np.ndarray:
    from support import probabilities
    from tfcnn.models.network import load_model

    x = images[..., None].astype(np.float32) / 255.0
    return np.mean([np.asarray(probabilities(load_model(ens / f"member-{k}" / "model.keras"), x),
                               np.float64) for k in range(1, size + 1)], axis=0)


@pytest.fixture(scope="module")
def trained_ensemble(shared_datasets_dir, tmp_path_factory):
    """`tfcnn train --ensemble 2 --seed 11` (tiny): its folder, exit status and output."""
    ens = tmp_path_factory.mktemp("ens") / "ens"
    argv = ["train", "--ensemble", "2", "--seed", "11", "--data-dir", str(shared_datasets_dir),
            "--out", str(ens), *TINY]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(argv)
    return ens, status, out.getvalue()


@pytest.mark.slow
def test_two_members_with_consecutive_seeds_and_a_consistent_ensemble_json(
        trained_ensemble, shared_datasets_dir, capsys):
    from tfcnn.data.locate import load_dataset

    ens, status, _ = trained_ensemble
    assert status == 0
    summary = json.loads((ens / "ensemble.json").read_text())
    assert [m["path"] for m in summary["members"]] == ["member-1", "member-2"]
    assert [m["seed"] for m in summary["members"]] == [11, 12] and summary["seed"] == 11
    for member in summary["members"]:
        run = ens / member["path"]
        config = json.loads((run / "config.json").read_text())
        assert config["seed"] == member["seed"] and config["out"] == str(run)
        metrics = json.loads((run / "metrics.json").read_text())
        assert len(metrics["epochs"]) == 1 and (run / "model.keras").is_file()
        assert member["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert json.loads((ens / "config.json").read_text())["seed"] == 11
    data = load_dataset("mnist", shared_datasets_dir)
    mean = _mean_probabilities(ens, data.x_test[:256], 2)
    assert summary["num_test_images"] == 256
    assert summary["test_accuracy"] == pytest.approx(
        float(np.mean(mean.argmax(axis=1) == data.y_test[:256])), abs=1e-6)
    true = mean[np.arange(256), data.y_test[:256]]
    assert summary["test_loss"] == pytest.approx(float(-np.mean(np.log(true))), abs=1e-4)


@pytest.mark.slow
def test_resume_trains_only_the_missing_member_the_same_way(trained_ensemble, tmp_path, capsys):
    ens, status, _ = trained_ensemble
    assert status == 0
    copy = tmp_path / "ens"
    shutil.copytree(ens, copy)
    shutil.rmtree(copy / "member-2")
    kept = (copy / "member-1" / "model.keras").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "--resume", str(copy), "--quiet"]) == 0
    assert capsys.readouterr().out == f"{copy}\n"  # --quiet: the run directory only
    assert (copy / "member-1" / "model.keras").stat().st_mtime_ns == kept
    assert same_weights(load_weights(copy / "member-2" / "model.keras"),
                        load_weights(ens / "member-2" / "model.keras"))
    assert json.loads((copy / "ensemble.json").read_text()) == json.loads(
        (ens / "ensemble.json").read_text())
    # --epochs raises every member's target; the shared config.json records it.
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--quiet"]) == 0
    for k in (1, 2):
        metrics = json.loads((copy / f"member-{k}" / "metrics.json").read_text())
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert json.loads((copy / "config.json").read_text())["epochs"] == 2
    summary = json.loads((copy / "ensemble.json").read_text())
    assert summary["members"][0]["test_accuracy"] == pytest.approx(json.loads(
        (copy / "member-1" / "metrics.json").read_text())["test_accuracy"], abs=1e-4)


@pytest.mark.slow
def test_the_output_names_each_member_and_ends_with_the_ensemble_line(trained_ensemble):
    ens, status, output = trained_ensemble
    assert status == 0
    lines = output.splitlines()
    summary = json.loads((ens / "ensemble.json").read_text())
    a, b = (100 * m["test_accuracy"] for m in summary["members"])
    assert lines[-2] == (f"Ensemble of 2: test accuracy {100 * summary['test_accuracy']:.2f}%, "
                         f"test loss {summary['test_loss']:.4f} (members: {a:.2f}%, {b:.2f}%)")
    assert lines[-1] == f"Run directory: {ens}"
    assert lines[0] == f"Member 1/2: {ens / 'member-1'} (seed 11)"
    assert f"Member 2/2: {ens / 'member-2'} (seed 12)" in lines
    assert sum(line.startswith("Epoch 1/1: ") for line in lines) == 2


@pytest.mark.slow
def test_evaluate_takes_the_ensemble_directory(trained_ensemble, capsys):
    ens, status, _ = trained_ensemble
    assert status == 0
    assert main(["evaluate", str(ens), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [m["model_file"] for m in printed["members"]] == [
        str(ens / "member-1" / "model.keras"), str(ens / "member-2" / "model.keras")]
    assert sum(map(sum, printed["confusion_matrix"])) == 10000  # the whole test set
    assert (ens / "report-ensemble" / "evaluation.json").is_file()


def test_an_ensemble_trains_on_a_folder_with_its_own_test_split(tmp_path):
    """fashion_photos' layout: ROOT/train and ROOT/test; members share the test images."""
    from support import make_shapes
    from tfcnn.core.config import TrainConfig
    from tfcnn.training.loop import Hooks

    root = tmp_path / "photos"
    make_shapes(root / "train", per_class=6)
    make_shapes(root / "test", per_class=2)
    config = TrainConfig(dataset=f"folder:{root}", grayscale=False, image_size="16",
                         model="4C3-P2-D3", epochs=1, batch_size=6, seed=4, cache="none")
    result = ensemble.train_ensemble(config, tmp_path / "ens", 2, Hooks())
    summary = read_ensemble(tmp_path / "ens")
    assert [m["seed"] for m in summary["members"]] == [4, 5]
    assert summary["num_test_images"] == 6
    assert 0 <= result.test_accuracy <= 1
    assert main(["evaluate", str(tmp_path / "ens"), "--json"]) == 0
