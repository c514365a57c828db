"""Batch-norm statistics of short runs: inference mode agrees with what training reported."""

import numpy as np
import pytest

from support import make_shapes
from tfcnn.core.config import TrainConfig
from tfcnn.data.source import load_training_data
from tfcnn.models.network import build_model, load_model
from tfcnn.training import batchnorm
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run


def test_a_small_folder_run_predicts_its_training_images_as_it_reported(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=33)  # 99 images, 90 to train on
    config = TrainConfig(dataset=f"folder:{root}", model="8C3-P2-BN-16C3-P2-BN-D3", epochs=4,
                         batch_size=8, seed=1, lr=0.003)
    dataset, _ = load_training_data(config)
    notes: list[str] = []
    result = train_run(config, tmp_path / "run", Hooks(note=notes.append), dataset=dataset)
    model = load_model(tmp_path / "run" / "model.keras")
    images = dataset.x_train.astype(np.float32)[..., np.newaxis] / 255.0  # grayscale
    predicted = np.argmax(model(images, training=False), axis=-1)
    inference_accuracy = float(np.mean(predicted == dataset.y_train))
    reported = result.epochs[-1]["accuracy"]
    assert reported > 0.7  # the network did learn the shapes
    # Before: 96.7% reported, 55.6% in inference mode (moving averages 48 steps old).
    assert abs(inference_accuracy - reported) <= 0.1, (inference_accuracy, reported)
    recomputed = [n for n in notes if "batch-norm statistics recomputed" in n]
    assert len(recomputed) == 1 and "on 90 training images" in recomputed[0]


def test_recomputed_statistics_are_those_of_the_training_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 8, 8)).astype(np.uint8)
    model = build_model("BN-D2", (8, 8, 1), ("a", "b"), seed=0)
    assert batchnorm.recompute_statistics(model, images) == 300
    (layer,) = batchnorm.batch_norm_layers(model)
    scaled = images.astype(np.float64) / 255.0
    # Two batches (256 + 44 images), weighted by their sizes.
    parts = (scaled[:256], scaled[256:])
    mean = sum(p.mean() * len(p) for p in parts) / 300
    variance = sum(p.var() * len(p) for p in parts) / 300
    np.testing.assert_allclose(float(layer.moving_mean.numpy()[0]), mean, rtol=1e-5)
    np.testing.assert_allclose(float(layer.moving_variance.numpy()[0]), variance, rtol=1e-4)
    assert layer.momentum == 0.99  # restored


def test_long_runs_keep_their_moving_statistics():
    model = build_model("8C3-P2-BN-D2", (8, 8, 1), ("a", "b"), seed=0)
    assert batchnorm.needs_recompute(model, 45)
    assert not batchnorm.needs_recompute(model, batchnorm.settled_steps())
    assert batchnorm.needs_recompute(model, batchnorm.settled_steps() - 1)
    assert not batchnorm.needs_recompute(build_model("8C3-P2-D2", (8, 8, 1), ("a", "b"), 0), 5)


def test_pretrained_backbone_statistics_are_never_recomputed():
    from tfcnn.models.network import build_model
    from tfcnn.training.batchnorm import needs_recompute

    model = build_model("4C3-BN-D3", (8, 8, 1), ("a", "b", "c"), seed=0)
    assert needs_recompute(model, total_steps=10)  # a short run's statistics need it
    model.frozen_statistics = True  # as a keras: backbone with pretrained weights has
    assert not needs_recompute(model, total_steps=10)


def _accuracy(model, images, labels) -> float:
    """The inference-mode accuracy of `model` on uint8 `images`, fed as training feeds them."""
    from tfcnn.data import pipeline

    batches = pipeline.eval_batches(pipeline.array_dataset(images, labels), 256)
    predicted = np.concatenate([np.argmax(model(x, training=False), axis=-1) for x, _ in batches])
    return float(np.mean(predicted == labels))


def test_every_epochs_test_figure_is_that_of_the_model_with_settled_statistics(tmp_path):
    # Before: this run tested at 44% (4 of 9) in epochs 1-4 while its training accuracy rose
    # to 94%, and only the last epoch's figure had recomputed statistics behind it.
    root = make_shapes(tmp_path / "shapes", per_class=33)  # 99 images: 90 train, 9 test
    config = TrainConfig(dataset=f"folder:{root}", model="8C3-BN-P2-16C3-BN-P2-D3", epochs=5,
                         seed=1, grayscale=False, image_size="64")
    dataset, _ = load_training_data(config)
    run = tmp_path / "run"
    seen: list[tuple[float, float, float]] = []

    def epoch_end(record):
        model = load_model(run / "model.keras")  # as this epoch saved it
        kept = _accuracy(model, dataset.x_test, dataset.y_test)
        batchnorm.recompute_statistics(model, dataset.x_train)  # what the last epoch does
        seen.append((record["test_accuracy"], kept,
                     _accuracy(model, dataset.x_test, dataset.y_test)))

    train_run(config, run, Hooks(epoch_end=epoch_end), dataset=dataset)
    assert len(seen) == 5
    for reported, kept, settled in seen:
        assert reported == pytest.approx(kept, abs=1e-6) == settled


def test_the_recomputation_note_follows_the_epoch_line_it_belongs_to(tmp_path, capsys):
    from tfcnn.cli import main

    root = make_shapes(tmp_path / "shapes", per_class=10)
    # Before: "Note: batch-norm statistics recomputed ..." came before "Epoch 1/1: ...".
    assert main(["train", "--dataset", f"folder:{root}", "--model", "4C3-BN-P2-D3",
                 "--epochs", "1", "--seed", "1", "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    told = [i for i, line in enumerate(lines) if "batch-norm statistics recomputed" in line]
    assert len(told) == 1 and lines[told[0]].startswith("Note: ")
    assert lines[told[0] - 1].startswith("Epoch 1/1: ")
