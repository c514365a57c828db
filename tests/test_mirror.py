"""Mirror layers: equivariance layer by layer, invariance of a whole network, saving."""

import numpy as np
import pytest

from support import probabilities
from tfcnn.models import mirror as mi
from tfcnn.models.network import build_model, load_model

CLASSES = tuple("abcd")


def images(n: int = 3, size: int = 12, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def mirror_paired(x: np.ndarray) -> np.ndarray:
    """What mirroring the input does to a paired feature map: mirror it, swap the halves."""
    return np.asarray(mi.swap_halves(mi.mirror(x)))


@pytest.mark.parametrize("paired_input", [False, True])
def test_mirror_conv_output_mirrors_and_swaps_halves_with_its_input(paired_input):
    conv = mi.MirrorConv2D(6, 3, paired_input=paired_input, activation="relu")
    x = images(channels=4)
    x_mirrored = mirror_paired(x) if paired_input else x[:, :, ::-1]
    np.testing.assert_allclose(np.asarray(conv(x_mirrored)), mirror_paired(np.asarray(conv(x))),
                               atol=1e-5)


def test_mirror_conv_second_half_uses_the_mirrored_filters():
    conv = mi.MirrorConv2D(4, 3)
    conv.build((None, 8, 8, 1))
    kernel = np.asarray(conv.full_kernel())
    assert kernel.shape == (3, 3, 1, 4)
    np.testing.assert_array_equal(kernel[..., 2:], kernel[:, ::-1, :, :2])
    assert not np.allclose(kernel[..., 2:], kernel[..., :2])  # a random filter is asymmetric


def test_an_ordinary_conv_is_not_mirror_equivariant():
    # The property the mirror layers build in is not automatic.
    from keras import layers
    conv = layers.Conv2D(6, 3)
    x = images(channels=4)
    out, out_of_mirrored = np.asarray(conv(x)), np.asarray(conv(mirror_paired(x)))
    assert not np.allclose(out_of_mirrored, mirror_paired(out), atol=1e-3)


def test_mirror_conv_rejects_an_odd_filter_count():
    with pytest.raises(ValueError, match="even number of filters"):
        mi.MirrorConv2D(5, 3)


@pytest.mark.parametrize("training", [False, True])
def test_mirror_batch_norm_shares_statistics_between_the_halves(training):
    norm = mi.MirrorBatchNorm()
    x = images(channels=6) * 5 + 2
    out = np.asarray(norm(x, training=training))
    np.testing.assert_allclose(np.asarray(norm(mirror_paired(x), training=False)),
                               mirror_paired(np.asarray(norm(x, training=False))), atol=1e-5)
    assert norm.moving_mean.shape == (3,)
    if training:  # each pair of channels comes out with mean 0 and variance 1 together
        pairs = np.concatenate([out[..., :3], out[..., 3:]], axis=2)
        np.testing.assert_allclose(pairs.mean(axis=(0, 1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(pairs.var(axis=(0, 1, 2)), 1, atol=1e-2)


def test_fold_is_unchanged_by_mirroring_the_paired_input():
    x = images(channels=6)
    fold = mi.MirrorFold()
    assert np.asarray(fold(x)).shape == (3, 12, 12, 3)
    np.testing.assert_allclose(np.asarray(fold(mirror_paired(x))), np.asarray(fold(x)),
                               atol=1e-6)


MIRROR_NET = "8M3-BN-8M3-P2-BN-DO20-16M3-8C3-D12-D4"


@pytest.mark.parametrize("notation", [MIRROR_NET, "8M3-P2-BN-16M3S2-BN-DO20-D4"])
def test_a_mirror_network_gives_the_same_logits_for_an_image_and_its_mirror_image(notation):
    model = build_model(notation, (28, 28, 1), CLASSES, seed=2)
    x = images(4, 28)
    np.testing.assert_allclose(np.asarray(model(x[:, :, ::-1])), np.asarray(model(x)),
                               atol=1e-5)


def test_an_ordinary_network_gives_other_logits_for_the_mirror_image():
    model = build_model("8C3-BN-8C3-P2-BN-16C3-8C3-D12-D4", (28, 28, 1), CLASSES, seed=2)
    x = images(4, 28)
    assert not np.allclose(np.asarray(model(x[:, :, ::-1])), np.asarray(model(x)), atol=1e-3)


def test_mirror_network_has_half_the_convolution_weights_of_an_ordinary_one():
    def conv_weights(notation: str) -> int:
        model = build_model(notation, (28, 28, 1), CLASSES, seed=0)
        return sum(int(np.prod(w.shape)) for layer in model.stack
                   if "conv" in layer.name for w in layer.weights)
    assert conv_weights("8M3-16M3-D4") * 2 == conv_weights("8C3-16C3-D4")


def test_mirror_network_trains_saves_and_reloads_with_the_same_outputs(tmp_path):
    import keras
    model = build_model(MIRROR_NET, (28, 28, 1), CLASSES, seed=3, precision="mixed_bfloat16")
    x, y = images(16, 28), np.arange(16) % 4
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [np.array(w) for w in model.get_weights()]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    assert reloaded.precision == "float32"
    assert [type(layer).__name__ for layer in reloaded.stack][:2] == ["MirrorConv2D",
                                                                       "MirrorBatchNorm"]
    probs = np.asarray(probabilities(reloaded, x))
    np.testing.assert_allclose(probs, np.asarray(probabilities(model, x), dtype=np.float32),
                               atol=2e-2)  # bfloat16 against float32 arithmetic
    np.testing.assert_allclose(np.asarray(probabilities(reloaded, x[:, :, ::-1])), probs,
                               atol=1e-5)
