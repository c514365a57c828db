"""The training loop in-process, on a tiny generated dataset: learning, metrics, run files."""

import csv
import json
import math

import numpy as np
import pytest

from support import load_weights, same_weights, tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ModelSpecError, RunDirError
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run

SMALL = "8C3-P2-BN-DO10-D32-D10"


def train_tiny(tmp_path, name="run", hooks=None, **settings):
    config = TrainConfig(**{"model": SMALL, "epochs": 3, "batch_size": 16, "seed": 1,
                            "lr": 0.01, **settings})
    return train_run(config, tmp_path / name, hooks or Hooks(), dataset=tiny_digits())


def assert_resumed_to_3_epochs_as_a_straight_run(tmp_path):
    """Resume tmp_path/run to 3 epochs: the same weights as 3 epochs without a stop."""
    config = TrainConfig(model=SMALL, epochs=3, batch_size=16, seed=1, lr=0.01)
    resumed = train_run(config, tmp_path / "run", Hooks(), resume=True, dataset=tiny_digits())
    straight = train_tiny(tmp_path, "straight", epochs=3)
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3]
    assert same_weights(load_weights(resumed.run_dir / "model.keras"),
                        load_weights(straight.run_dir / "model.keras"))


def test_tiny_run_learns_and_loss_is_computed_from_logits(tmp_path):
    result = train_tiny(tmp_path, epochs=6)
    losses = [r["loss"] for r in result.epochs]
    assert losses[-1] < losses[0]
    assert result.test_accuracy >= 0.8
    # Softmax fed to a from-logits loss cannot go below -log(e / (e + 9)) = 1.46.
    assert losses[-1] < 1.0


def test_run_directory_files_and_metrics_json_shape(tmp_path):
    result = train_tiny(tmp_path, epochs=2)
    run = result.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"dataset", "model", "epochs", "test_accuracy", "train_seconds"}
    assert (metrics["dataset"], metrics["model"]) == ("mnist", SMALL)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for e in metrics["epochs"]:
        assert set(e) == {"epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"}
        assert 0 <= e["accuracy"] <= 1 and 0 <= e["test_accuracy"] <= 1
    assert metrics["test_accuracy"] == metrics["epochs"][-1]["test_accuracy"]
    assert 0 < metrics["train_seconds"] <= sum(e["seconds"] for e in metrics["epochs"]) + 1
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    expected = [e["test_accuracy"] for e in metrics["epochs"]]
    assert [float(r["test_accuracy"]) for r in rows] == expected
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 1 and config["model"] == SMALL and "tensorflow" in config["versions"]
    assert (run / "model.keras").is_file()
    assert (run / "checkpoints" / "checkpoint").is_file()
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    assert not list(run.glob(".*.tmp*"))


def test_train_metrics_are_reset_every_epoch(tmp_path, monkeypatch):
    from tfcnn.training import loop

    counts = []
    hooks = Hooks()

    def spy(*args, **kwargs):
        steps = loop.make_steps(*args, **kwargs)
        # The epoch hook runs before the reset: the loss Mean must hold one epoch of images.
        hooks.epoch_end = lambda _record: counts.append(float(steps.train_metrics[0].count))
        return steps

    monkeypatch.setattr("tfcnn.training.start.make_steps", spy)
    train_tiny(tmp_path, hooks=hooks, epochs=2)
    assert counts == [256.0, 256.0]


def test_same_seed_gives_identical_weights_in_process(tmp_path):
    a = train_tiny(tmp_path, "a", epochs=2)
    b = train_tiny(tmp_path, "b", epochs=2)
    c = train_tiny(tmp_path, "c", epochs=2, seed=2)
    weights = [load_weights(r.run_dir / "model.keras") for r in (a, b, c)]
    assert same_weights(weights[0], weights[1])
    assert not same_weights(weights[0], weights[2])


def test_an_existing_run_is_not_overwritten(tmp_path):
    train_tiny(tmp_path, epochs=1)
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(RunDirError, match="already holds a run.*--resume"):
        train_tiny(tmp_path, epochs=1)
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_resume_with_more_epochs_continues_from_the_checkpoint(tmp_path):
    train_tiny(tmp_path, epochs=1)
    assert_resumed_to_3_epochs_as_a_straight_run(tmp_path)


def test_last_layer_must_match_the_number_of_classes(tmp_path):
    with pytest.raises(ModelSpecError, match="gives 7 outputs.*10 classes.*D10"):
        train_tiny(tmp_path, model="8C3-D7")
    assert not (tmp_path / "run").exists()


def test_metric_values_are_finite(tmp_path):
    result = train_tiny(tmp_path, epochs=1)
    assert all(math.isfinite(v) for r in result.epochs for v in r.values())


def test_several_steps_per_call_give_the_same_weights_as_one(tmp_path):
    one = train_tiny(tmp_path, "one", epochs=2, steps_per_call=1)
    many = train_tiny(tmp_path, "many", epochs=2, steps_per_call=7)  # 16 steps: 7 + 7 + 2
    assert same_weights(load_weights(one.run_dir / "model.keras"),
                        load_weights(many.run_dir / "model.keras"))
    assert one.epochs[-1]["loss"] == many.epochs[-1]["loss"]


def test_onecycle_schedule_warms_up_then_decays_to_zero():
    from tfcnn.training.recipe import learning_rate

    schedule = learning_rate(TrainConfig(lr=0.01, schedule="onecycle", warmup=0.25, epochs=2), 50)
    rates = [float(schedule(step)) for step in (0, 12, 25, 60, 100)]
    assert rates[0] == pytest.approx(0.01 / 25)
    assert rates[2] == pytest.approx(0.01)  # the peak, a quarter of the way in
    assert rates[1] < rates[2] and rates[3] < rates[2]
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    assert learning_rate(TrainConfig(lr=0.003), 50) == 0.003


def test_cosine_schedule_starts_at_lr_and_decays_to_zero():
    from tfcnn.training.recipe import learning_rate

    schedule = learning_rate(TrainConfig(lr=0.01, schedule="cosine", epochs=2), 50)
    rates = [float(schedule(step)) for step in (0, 50, 100)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[1] == pytest.approx(0.005)
    assert rates[2] == pytest.approx(0.0, abs=1e-9)


def test_weight_decay_shrinks_conv_and_dense_kernels_but_not_batch_norm(tmp_path):
    # lr tiny: the gradients barely move the weights, the decay (x lr x 1e4) dominates.
    import keras

    from tfcnn.training.run import make_optimizer

    assert type(make_optimizer(TrainConfig(), 10)) is keras.optimizers.Adam
    plain = train_tiny(tmp_path, "plain", epochs=1, lr=1e-6)
    decayed = train_tiny(tmp_path, "decayed", epochs=1, lr=1e-6, weight_decay=1e4)
    from tfcnn.models.network import load_model

    a, b = load_model(plain.run_dir / "model.keras"), load_model(decayed.run_dir / "model.keras")
    for va, vb in zip(a.trainable_variables, b.trainable_variables, strict=True):
        norm_a, norm_b = float(np.linalg.norm(va.numpy())), float(np.linalg.norm(vb.numpy()))
        if va.path.endswith("kernel"):
            assert norm_b < 0.99 * norm_a, va.path
        else:  # biases and batch-norm gamma/beta are excluded from the decay
            assert norm_b == pytest.approx(norm_a, rel=1e-3, abs=1e-4), va.path


def test_label_smoothing_raises_the_training_loss_floor(tmp_path):
    # A smoothed target cannot be matched with zero loss: the minimum is the target's entropy.
    plain = train_tiny(tmp_path, "plain", epochs=6)
    smooth = train_tiny(tmp_path, "smooth", epochs=6, label_smoothing=0.2)
    floor = -(0.82 * np.log(0.82) + 9 * 0.02 * np.log(0.02))
    assert smooth.epochs[-1]["loss"] > floor > plain.epochs[-1]["loss"]
    assert smooth.test_accuracy >= 0.8


def test_augmented_training_is_repeatable_and_differs_from_plain(tmp_path):
    settings = {"epochs": 2, "shift": 2.0, "rotate": 10.0, "elastic": 20.0}
    one = train_tiny(tmp_path, "one", **settings)
    two = train_tiny(tmp_path, "two", **settings)
    plain = train_tiny(tmp_path, "plain", epochs=2)
    w1, w2 = load_weights(one.run_dir / "model.keras"), load_weights(two.run_dir / "model.keras")
    assert same_weights(w1, w2)
    assert not same_weights(w1, load_weights(plain.run_dir / "model.keras"))


def test_validation_split_keeps_the_best_epoch_and_tests_once(tmp_path):
    from support import probabilities
    from tfcnn.data.source import with_validation_split
    from tfcnn.models.network import load_model

    data = with_validation_split(tiny_digits(n_train=400, n_test=100), 0.25, seed=1)
    config = TrainConfig(model=SMALL, epochs=4, batch_size=16, seed=1, lr=0.05, val_split=0.25)
    result = train_run(config, tmp_path / "run", Hooks(), dataset=data)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert all(e["test_loss"] is None and e["test_accuracy"] is None for e in epochs)
    assert all(0 <= e["val_accuracy"] <= 1 for e in epochs)
    best = max(epochs, key=lambda e: (e["val_accuracy"], -e["val_loss"], -e["epoch"]))
    assert metrics["best_epoch"] == best["epoch"]
    # model.keras holds the best epoch's weights: its validation accuracy is that epoch's,
    # and the one test figure is that model's accuracy on the test set.
    model = load_model(result.run_dir / "model.keras")

    def accuracy(x, y):
        probs = probabilities(model, (x[..., None] / 255).astype(np.float32))
        return float(np.mean(np.argmax(probs, axis=1) == y))

    assert accuracy(data.x_val, data.y_val) == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert metrics["test_accuracy"] == pytest.approx(accuracy(data.x_test, data.y_test),
                                                     abs=1e-6)
    assert result.test_accuracy == metrics["test_accuracy"]
    with (result.run_dir / "metrics.csv").open() as f:
        assert "val_accuracy" in next(csv.reader(f))


def test_a_preset_that_tests_at_the_end_skips_the_other_test_passes(tmp_path):
    notes, seen = [], []
    result = train_tiny(tmp_path, epochs=3, preset="fast",
                        hooks=Hooks(note=notes.append, epoch_end=seen.append))
    assert [r["test_accuracy"] is None for r in result.epochs] == [True, True, False]
    assert result.test_accuracy == result.epochs[-1]["test_accuracy"] is not None
    assert [r["test_skipped"] for r in seen] == [True, True, False]
    assert any("testing after the last epoch only" in n for n in notes)
    plain = train_tiny(tmp_path, name="plain", epochs=2)
    assert all(r["test_accuracy"] is not None for r in plain.epochs)


def test_a_stop_requested_after_an_epoch_ends_the_run_there_and_resume_continues(tmp_path):
    calls = []
    hooks = Hooks(train_begin=lambda model, steps: calls.append(("begin", steps)),
                  epoch_begin=lambda epoch: calls.append(("epoch", epoch)),
                  stop_requested=lambda: len(calls) >= 3)
    stopped = train_tiny(tmp_path, hooks=hooks, epochs=3)
    assert calls == [("begin", 16), ("epoch", 1), ("epoch", 2)]
    assert [r["epoch"] for r in stopped.epochs] == [1, 2]
    assert stopped.test_accuracy == stopped.epochs[-1]["test_accuracy"]
    assert_resumed_to_3_epochs_as_a_straight_run(tmp_path)
