"""Choosing the loader for --dataset, and training on an image folder end to end."""

import json

import pytest

from support import load_weights, make_shapes, run_tfcnn
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.source import check_dataset_setting, load_training_data


def test_folder_settings_are_refused_for_registered_datasets():
    with pytest.raises(ConfigError, match="--image-size, --rgb: only for image-folder"):
        check_dataset_setting(TrainConfig(image_size="32", grayscale=False))


def test_unknown_dataset_and_missing_folder_are_named(tmp_path):
    with pytest.raises(DatasetError, match="cifar"):
        check_dataset_setting(TrainConfig(dataset="cifar"))
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'}: no such folder"):
        check_dataset_setting(TrainConfig(dataset=f"folder:{tmp_path / 'nope'}"))


def test_folder_dataset_loads_with_the_configured_size_colour_and_split(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=10)
    (root / "circle" / "broken.png").write_bytes(b"not an image")
    config = TrainConfig(dataset=f"folder:{root}", image_size="20x24", grayscale=False,
                         test_split=0.2, seed=3)
    data, skipped = load_training_data(config)
    assert data.class_names == ("circle", "square", "triangle")
    assert data.x_train.shape == (24, 20, 24, 3) and data.x_test.shape == (6, 20, 24, 3)
    assert [s[0] for s in skipped] == [str(root / "circle" / "broken.png")]


@pytest.mark.slow
def test_train_on_an_image_folder_from_the_cli(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=12)
    (root / "square" / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    done = run_tfcnn("train", "--dataset", f"folder:{root}", "--model", "8C3-P2-D16-D3",
                     "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--rgb",
                     "--test-split", "0.25", "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Skipped 1 unreadable image(s)" in done.stdout and "empty.png" in done.stdout
    assert "27 train, 9 test images" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == f"folder:{root}" and len(metrics["epochs"]) == 2
    from tfcnn.models.network import load_model

    model = load_model(out / "model.keras")
    assert model.class_names == ("circle", "square", "triangle")
    assert model.image_shape == (32, 32, 3) and model.preprocessor.prepare is None
    assert len(load_weights(out / "model.keras")) > 0


@pytest.mark.slow
def test_folder_run_without_held_out_images_reports_no_test_metrics(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=4)
    done = run_tfcnn("train", "--dataset", f"folder:{root}", "--model", "4C3-D3", "--epochs",
                     "1", "--test-split", "0", "--seed", "1", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no test images" in done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] is None and metrics["epochs"][0]["test_loss"] is None


def test_cli_rejects_folder_options_for_mnist(capsys):
    from tfcnn.cli import main

    assert main(["train", "--image-size", "32"]) == 2
    assert "--image-size: only for image-folder datasets" in capsys.readouterr().err


def test_val_split_of_a_registered_dataset_comes_from_its_training_set():
    import numpy as np

    from support import tiny_digits
    from tfcnn.data.source import with_validation_split

    data = tiny_digits(n_train=500, n_test=50)
    split = with_validation_split(data, 0.2, seed=4)
    assert len(split.y_val) == 100 and len(split.y_train) == 400
    assert split.x_test is data.x_test and split.y_test is data.y_test  # untouched
    for label in range(10):  # stratified: each class keeps its share
        share = (split.y_val == label).sum() / max(1, (data.y_train == label).sum())
        assert abs(share - 0.2) < 0.05
    # Disjoint and complete: every training image lands in exactly one part.
    rows = {img.tobytes() for img in data.x_train}
    assert {img.tobytes() for img in split.x_train} | {img.tobytes() for img in split.x_val} == rows
    assert not {img.tobytes() for img in split.x_train} & {img.tobytes() for img in split.x_val}
    again = with_validation_split(data, 0.2, seed=4)
    assert np.array_equal(again.x_val, split.x_val)
    assert with_validation_split(data, None, seed=4) is data


def test_a_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    import os

    from tfcnn.data.source import absolute_data_dir

    monkeypatch.chdir(tmp_path)
    assert absolute_data_dir("data") == str(tmp_path / "data")
    assert absolute_data_dir("./a/../data/") == str(tmp_path / "data")
    assert absolute_data_dir(tmp_path / "x") == str(tmp_path / "x")
    assert absolute_data_dir("~/d") == os.path.join(os.path.expanduser("~"), "d")


def test_an_explicit_data_dir_without_the_dataset_is_refused_before_training(tmp_path):
    (tmp_path / "mnist").mkdir()  # the right sub-folder, but empty
    config = TrainConfig(dataset="fashion_mnist", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=rf"^run/config\.json data_dir {tmp_path}: holds no "
                       r"copy of fashion_mnist \(looked in "):
        check_dataset_setting(config, data_dir_origin="run/config.json data_dir")
    with pytest.raises(DatasetError, match=rf"^--data-dir {tmp_path}: holds no copy"):
        load_training_data(config)


# --- splits: --test-split (folders), --val-split (any dataset), ROOT/train + ROOT/test ------


def test_a_plain_folder_holds_out_test_split_and_val_split_is_validation(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=10)
    data, _ = load_training_data(TrainConfig(dataset=f"folder:{root}", test_split=0.2,
                                             val_split=0.25, seed=1))
    assert len(data.y_test) == 6  # 2 of each class's 10 are the test set
    assert len(data.y_val) == 6 and len(data.y_train) == 18  # a quarter of the other 24
    assert sorted(data.y_val.tolist()) == [0, 0, 1, 1, 2, 2]  # stratified


def test_a_root_with_train_and_test_folders_uses_them_as_the_splits(tmp_path):
    make_shapes(tmp_path / "root" / "train", per_class=8)
    make_shapes(tmp_path / "root" / "test", per_class=3)
    config = TrainConfig(dataset=f"folder:{tmp_path / 'root'}", seed=1)
    data, _ = load_training_data(config)
    assert data.class_names == ("circle", "square", "triangle")
    assert len(data.y_train) == 24 and len(data.y_test) == 9 and data.y_val is None
    with pytest.raises(ConfigError, match="has its own test split \\(test/\\)"):
        check_dataset_setting(config.replace(test_split=0.2))
    with pytest.raises(ConfigError, match="--test-split: only for image-folder"):
        check_dataset_setting(TrainConfig(test_split=0.2))
    (tmp_path / "root" / "test" / "circle").rename(tmp_path / "root" / "test" / "oval")
    with pytest.raises(DatasetError, match="class folders \\['oval', 'square', 'triangle'\\] "
                                           "differ from"):
        load_training_data(config)


def test_a_folder_runs_old_config_keeps_its_test_split():
    # Saved before --test-split existed: a folder's val_split was its held-out test share.
    old = TrainConfig.from_dict({"dataset": "folder:/data/shapes", "val_split": 0.3})
    assert (old.test_split, old.val_split) == (0.3, None)
    mnist = TrainConfig.from_dict({"dataset": "mnist", "val_split": 0.1})
    assert (mnist.test_split, mnist.val_split) == (None, 0.1)


def test_a_root_with_train_but_no_test_split_is_one_clear_error(tmp_path):
    root = tmp_path / "photos"
    make_shapes(root / "train", per_class=2)
    config = TrainConfig(dataset=f"folder:{root}")
    with pytest.raises(DatasetError, match=r"has train/ with class folders but no test/ or "
                                           r"val/ beside it .*folder:.*train to hold out"):
        check_dataset_setting(config)
    from tfcnn.cli import main

    assert main(["train", "--dataset", f"folder:{root}"]) != 0
    make_shapes(root / "val", per_class=1)  # now a split ROOT
    data, _ = load_training_data(config.replace(grayscale=False, image_size="16"))
    assert len(data.y_train) == 6 and len(data.y_test) == 3
