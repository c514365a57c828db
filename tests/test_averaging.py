"""Weight averaging (--ema): the swap of averaged and raw weights, and EMA training runs."""

import json

import numpy as np
import pytest

from support import load_weights, same_weights, tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run

SMALL = "8C3-P2-BN-DO10-D32-D10"


def tiny_model_and_optimizer(ema: float):
    import keras

    from tfcnn.models.network import build_model
    from tfcnn.training.run import make_optimizer

    model = build_model("4C3-D10", (28, 28, 1), tuple("0123456789"), seed=0)
    optimizer = make_optimizer(TrainConfig(lr=0.1, ema=ema), 10)
    optimizer.build(model.trainable_variables)
    return model, optimizer, keras


def step(model, optimizer, seed):
    import tensorflow as tf

    images = tf.random.stateless_uniform((4, 28, 28, 1), (seed, 0))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(images, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


def test_the_average_follows_the_momentum_formula():
    from tfcnn.training.averaging import averages_of

    model, optimizer, _ = tiny_model_and_optimizer(ema=0.5)
    step(model, optimizer, 1)  # the first step starts the average at the weights
    average = [a.numpy().copy() for a in averages_of(optimizer)]
    step(model, optimizer, 2)
    for a_before, a_now, w in zip(average, averages_of(optimizer), model.trainable_variables,
                                  strict=True):
        np.testing.assert_allclose(a_now.numpy(), 0.5 * a_before + 0.5 * w.numpy(), rtol=1e-6)


def test_averaged_weights_are_swapped_in_and_the_raw_ones_back():
    from tfcnn.training.averaging import averaged_weights, averages_of, keep_averaged_weights

    model, optimizer, _ = tiny_model_and_optimizer(ema=0.9)
    for seed in range(3):
        step(model, optimizer, seed)
    raw = [v.numpy().copy() for v in model.trainable_variables]
    averages = [a.numpy().copy() for a in averages_of(optimizer)]
    assert not same_weights(raw, averages)
    with averaged_weights(model, optimizer):
        assert same_weights([v.numpy() for v in model.trainable_variables], averages)
    assert same_weights([v.numpy() for v in model.trainable_variables], raw)
    with pytest.raises(RuntimeError), averaged_weights(model, optimizer):
        raise RuntimeError("the raw weights come back even on an error")
    assert same_weights([v.numpy() for v in model.trainable_variables], raw)
    keep_averaged_weights(model, optimizer)
    assert same_weights([v.numpy() for v in model.trainable_variables], averages)


def test_without_ema_nothing_is_swapped():
    from tfcnn.training.averaging import averaged_weights, averages_of

    model, optimizer, _ = tiny_model_and_optimizer(ema=0.0)
    step(model, optimizer, 0)
    assert averages_of(optimizer) is None
    raw = [v.numpy().copy() for v in model.trainable_variables]
    with averaged_weights(model, optimizer):
        assert same_weights([v.numpy() for v in model.trainable_variables], raw)


def train_tiny(tmp_path, name, **settings):
    config = TrainConfig(**{"model": SMALL, "epochs": 3, "batch_size": 16, "seed": 1,
                            "lr": 0.01, **settings})
    return train_run(config, tmp_path / name, Hooks(), dataset=tiny_digits())


def test_ema_changes_what_is_kept_not_how_training_goes(tmp_path):
    from support import probabilities
    from tfcnn.models.network import load_model

    plain = train_tiny(tmp_path, "plain")
    ema = train_tiny(tmp_path, "ema", ema=0.9)
    # The same raw trajectory: identical training losses; but another model is kept.
    assert [r["loss"] for r in ema.epochs] == [r["loss"] for r in plain.epochs]
    assert not same_weights(load_weights(plain.run_dir / "model.keras"),
                            load_weights(ema.run_dir / "model.keras"))
    # The reported test accuracy is that of the kept (averaged) model.
    data = tiny_digits()
    model = load_model(ema.run_dir / "model.keras")
    probs = probabilities(model, (data.x_test[..., None] / 255).astype(np.float32))
    accuracy = float(np.mean(np.argmax(probs, axis=1) == data.y_test))
    metrics = json.loads((ema.run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert json.loads((ema.run_dir / "config.json").read_text())["ema"] == 0.9


def test_an_ema_run_resumes_exactly(tmp_path):
    # The checkpoint must hold the raw weights and the average: a resumed run ends identical.
    train_tiny(tmp_path, "run", epochs=1, ema=0.9)
    config = TrainConfig(model=SMALL, epochs=3, batch_size=16, seed=1, lr=0.01, ema=0.9)
    resumed = train_run(config, tmp_path / "run", Hooks(), resume=True, dataset=tiny_digits())
    straight = train_tiny(tmp_path, "straight", ema=0.9)
    assert [r["loss"] for r in resumed.epochs] == [r["loss"] for r in straight.epochs]
    assert same_weights(load_weights(resumed.run_dir / "model.keras"),
                        load_weights(straight.run_dir / "model.keras"))


def test_ema_with_a_validation_split_keeps_the_best_averaged_epoch(tmp_path):
    from tfcnn.data.source import with_validation_split

    data = with_validation_split(tiny_digits(n_train=400, n_test=100), 0.25, seed=1)
    config = TrainConfig(model=SMALL, epochs=3, batch_size=16, seed=1, lr=0.05,
                         val_split=0.25, ema=0.8)
    result = train_run(config, tmp_path / "run", Hooks(), dataset=data)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= 3
    assert 0 <= metrics["test_accuracy"] <= 1
