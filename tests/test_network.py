"""The Keras model built from notation: size, logits, seeding, saving and reloading."""

import subprocess
import sys

import numpy as np
import pytest

from support import probabilities
from tfcnn.models.network import NotationModel, build_model, load_model
from tfcnn.spec import notation as nt

DIGITS = tuple("0123456789")


def tutorial(seed: int = 0) -> NotationModel:
    return build_model(nt.NETWORKS["tutorial"], (28, 28, 1), DIGITS, seed)


def test_tutorial_preset_has_the_tutorials_parameter_count():
    assert tutorial().count_params() == 40_842


def test_model_returns_logits_and_probabilities_come_from_an_explicit_softmax():
    model = tutorial()
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    logits = np.asarray(model(x, training=False))
    assert logits.shape == (8, 10)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # no softmax inside the model
    probs = np.asarray(probabilities(model, x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)


def test_dropout_acts_only_in_training():
    model = tutorial()
    x = np.random.default_rng(1).random((16, 28, 28, 1), dtype=np.float32)
    inference = [np.asarray(model(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(*inference)
    assert not np.allclose(np.asarray(model(x, training=True)), inference[0])


def test_same_seed_same_initial_weights_other_seed_other_weights():
    a, b, c = tutorial(5).get_weights(), tutorial(5).get_weights(), tutorial(6).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_saved_model_reloads_in_a_fresh_process_with_same_outputs(tmp_path):
    model = build_model("8C3-P2-BN-DO10-D16-D4", (28, 28, 1), ("a", "b", "c", "d"), 3)
    x = np.random.default_rng(2).random((5, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x)))
    model.save(tmp_path / "m.keras")
    # A plain keras.saving.load_model after importing tfcnn.models.network: no custom_objects.
    script = (
        "import sys, numpy as np, keras, tfcnn.models.network\n"
        "d = sys.argv[1]\n"
        "m = keras.saving.load_model(d + '/m.keras')\n"
        "assert type(m).__name__ == 'NotationModel', type(m)\n"
        "assert m.class_names == ('a', 'b', 'c', 'd') and m.notation == '8C3-P2-BN-DO10-D16-D4'\n"
        "y = np.asarray(m(np.load(d + '/x.npy')))\n"
        "assert np.array_equal(y, np.load(d + '/y.npy')), 'outputs differ'\n"
        "print('reloaded ok')\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reloaded ok" in done.stdout


def test_load_model_keeps_config_fields(tmp_path):
    model = tutorial(9)
    model.save(tmp_path / "t.keras")
    loaded = load_model(tmp_path / "t.keras")
    assert (loaded.seed, loaded.class_names, loaded.image_shape) == (9, DIGITS, (28, 28, 1))


def test_invalid_notation_fails_before_building():
    from tfcnn.core.errors import ModelSpecError

    with pytest.raises(ModelSpecError, match="token 2"):
        build_model("8C3-Q2-D10", (28, 28, 1), DIGITS, 0)


def test_relu_moved_after_the_pool_computes_the_same_as_relu_then_pool():
    import keras

    model = build_model("8C3-P2-BN-6C3-D10", (28, 28, 1), DIGITS, 4)
    reference = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPool2D(2),
        keras.layers.BatchNormalization(), keras.layers.Conv2D(6, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10)])
    reference.set_weights(model.get_weights())
    x = np.random.default_rng(3).normal(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(reference(x)))
    names = [layer.name for layer in model.stack]
    assert names[:3] == ["conv1", "pool1", "relu1"]  # the second conv keeps its own ReLU


def test_mixed_bfloat16_computes_in_bf16_gives_float32_logits_and_reloads_as_float32(tmp_path):
    notation = "8C3-P2-BN-DO10-D16-D10"
    mixed = build_model(notation, (28, 28, 1), tuple("0123456789"), 3,
                        precision="mixed_bfloat16")
    plain = build_model(notation, (28, 28, 1), tuple("0123456789"), 3)
    hidden = [layer for layer in mixed.stack if layer.name != "logits"]
    assert all(layer.compute_dtype == "bfloat16" for layer in hidden)
    assert all(v.dtype == "float32" for v in mixed.weights)  # weights stay float32
    x = np.random.default_rng(0).random((16, 28, 28, 1)).astype(np.float32)
    logits = mixed(x, training=False)
    assert logits.dtype == "float32"
    # Same initial weights; bf16 arithmetic keeps about 3 significant digits.
    assert np.allclose(logits.numpy(), plain(x, training=False).numpy(), atol=0.05)
    mixed.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert all(layer.compute_dtype == "float32" for layer in loaded.stack)
    assert np.allclose(loaded(x).numpy(), plain(x).numpy(), atol=1e-5)


PHOTO_NET = "16C3p-BN-P2-R32S2-R32-32SC3p-GAP-DO20-D5"


def _trained_a_little(model, x):
    """A few SGD steps so batch-norm statistics and weights move off their initial values."""
    import keras
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, np.arange(len(x)) % 5, epochs=2, batch_size=4, verbose=0)
    return model


@pytest.mark.parametrize(("notation", "shape", "params"), [
    # 3x3x3x8 + 8; residual 8->16 stride 2: 3x3x8x16 + 3x3x16x16 + 1x1x8x16 (no biases)
    # + 3 batch norms of 4x16; GAP; 16x5 + 5
    ("8C3p-R16S2-GAP-D5", (20, 20, 3), 224 + 1152 + 2304 + 128 + 192 + 85),
    # identity shortcut: 2 x 3x3x8x8 + 2 batch norms of 4x8, no projection
    ("8C3-R8-GAP-D5", (20, 20, 3), 224 + 1152 + 64 + 45),
    # separable 5x5: depthwise 5x5x3, pointwise 3x8, bias 8; same padding keeps 20x20
    ("8SC5p-D5", (20, 20, 3), 75 + 24 + 8 + 20 * 20 * 8 * 5 + 5),
    ("8SC5-D5", (20, 20, 3), 75 + 24 + 8 + 16 * 16 * 8 * 5 + 5),
])
def test_photo_layers_have_the_expected_parameter_counts(notation, shape, params):
    assert build_model(notation, shape, tuple("abcde"), 0).count_params() == params


def test_photo_layers_give_the_shapes_the_notation_says():
    model = build_model(PHOTO_NET, (32, 32, 3), tuple("abcde"), 0)
    shape = (None, 32, 32, 3)
    shapes = []
    for layer in model.stack:
        shape = layer.compute_output_shape(shape)
        shapes.append((layer.name, tuple(shape)))
    assert dict(shapes) == {
        "conv1": (None, 32, 32, 16), "batchnorm1": (None, 32, 32, 16),
        "pool1": (None, 16, 16, 16),
        "residual1": (None, 8, 8, 32), "residual2": (None, 8, 8, 32),
        "sepconv1": (None, 8, 8, 32), "gap": (None, 32), "dropout1": (None, 32),
        "logits": (None, 5)}


def test_a_gap_network_takes_other_image_sizes_with_the_same_weights():
    model = build_model(PHOTO_NET, (32, 32, 3), tuple("abcde"), 0)
    for size in [(32, 32), (48, 40), (17, 23)]:
        x = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
        assert np.asarray(model(x)).shape == (2, 5)


def test_residual_blocks_use_batch_norm_statistics_only_in_training():
    model = build_model("8C3p-R8-R16S2-GAP-D5", (16, 16, 3), tuple("abcde"), 1)
    x = np.random.default_rng(4).random((4, 16, 16, 3), dtype=np.float32)
    inference = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(inference, np.asarray(model(x, training=False)))
    assert not np.allclose(np.asarray(model(x, training=True)), inference, atol=1e-3)


def test_photo_network_is_seeded_and_reloads_with_the_same_outputs(tmp_path):
    a, b = (build_model(PHOTO_NET, (24, 24, 3), tuple("abcde"), 7) for _ in range(2))
    c = build_model(PHOTO_NET, (24, 24, 3), tuple("abcde"), 8)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights(),
                                                        strict=True))
    block = [layer for layer in a.stack if layer.name == "residual1"][0]
    other = [layer for layer in c.stack if layer.name == "residual1"][0]
    assert not np.array_equal(block.conv1.kernel, other.conv1.kernel)
    x = np.random.default_rng(5).random((8, 24, 24, 3), dtype=np.float32)
    _trained_a_little(a, x)
    a.save(tmp_path / "p.keras")
    loaded = load_model(tmp_path / "p.keras")
    assert loaded.notation == PHOTO_NET
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(a(x)), atol=1e-6)


def test_plain_layers_of_a_photo_network_compute_the_same_in_inference():
    import keras

    from tfcnn.models.mirror import plain_layers

    for notation in (PHOTO_NET, "8M3-BN-8M3-GAP-BN-D5"):
        model = build_model(notation, (16, 16, 3), tuple("abcde"), 2)
        x = np.random.default_rng(6).random((8, 16, 16, 3), dtype=np.float32)
        _trained_a_little(model, x)
        y = inputs = keras.Input((16, 16, 3))
        for layer in plain_layers(model.stack, (None, 16, 16, 3)):
            y = layer(y)
        plain = keras.Model(inputs, y)
        kinds = {type(layer).__module__.split(".")[0] for layer in plain._flatten_layers()}
        assert kinds == {"keras"}, kinds  # stock Keras layers only: loads without tfcnn
        np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(model(x)), atol=1e-4)


def test_mixed_precision_residual_blocks_compute_in_bfloat16():
    model = build_model("8C3p-R8-R16S2-GAP-D5", (16, 16, 3), tuple("abcde"), 1,
                        precision="mixed_bfloat16")
    block = [layer for layer in model.stack if layer.name == "residual2"][0]
    assert block.conv1.compute_dtype == "bfloat16" and block.norm2.compute_dtype == "bfloat16"
    x = np.random.default_rng(7).random((2, 16, 16, 3), dtype=np.float32)
    assert model(x).dtype == "float32"
