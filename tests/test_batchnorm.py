"""Batch-norm statistics of short runs: inference mode agrees with what training reported."""

import numpy as np

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
    assert len(notes) == 1 and "batch-norm statistics recomputed on 90 training images" in notes[0]


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
