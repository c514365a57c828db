"""tfcnn.explain's methods on tiny models: integrated gradients' completeness, Grad-CAM against
an independent computation, the sanity check of Adebayo et al. (2018), occlusion agreeing
with what blanking really does, and every kind of network (mirror, residual, RGB, nested
Keras backbones, no convolution)."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcnn.core.errors import ConfigError, ModelSpecError
from tfcnn.explain import Explanation, explain_images, feature_maps, first_layer_filters
from tfcnn.explain.batch import attributions
from tfcnn.explain.methods import gradcam, integrated_gradients, occlusion
from tfcnn.models.network import build_model


def logits_of(model, x):
    """The Keras model's logits, called directly (the reference for the methods' maths)."""
    return np.asarray(model(np.asarray(x, np.float32), training=False))

DIGITS = tuple("0123456789")
NOTATION = "8C3-P2-16C3-P2-D10"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN if either is constant."""
    def ranks(values: np.ndarray) -> np.ndarray:
        flat = values.ravel()
        order = np.argsort(flat, kind="stable")
        plain = np.empty(len(flat))
        plain[order] = np.arange(len(flat))
        _, inverse = np.unique(flat, return_inverse=True)
        return (np.bincount(inverse, plain) / np.bincount(inverse))[inverse]

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def mnist_trained(shared_datasets_dir):
    """A small CNN trained ~250 steps on 2,000 MNIST images (~96% test accuracy), and test
    images with their labels."""
    from tfcnn.data.locate import load_dataset

    data = load_dataset("mnist", str(shared_datasets_dir))
    x = data.x_train[:2000, ..., None].astype(np.float32) / 255
    model = build_model(NOTATION, (28, 28, 1), DIGITS, seed=0, prepare="mnist")
    model.compile(optimizer=keras.optimizers.Adam(0.005),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, data.y_train[:2000].astype(np.int32), batch_size=32, epochs=4, shuffle=False,
              verbose=0)
    test = data.x_test[:16, ..., None].astype(np.float32) / 255
    return model, test, data.y_test[:16].astype(np.int32)


def digit_batch(n: int = 4, seed: int = 0) -> np.ndarray:
    """Bright bars on a dark background, as a (n, 28, 28, 1) float batch."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n, 28, 28, 1)).astype(np.float32)
    for i in range(n):
        x[i, 4 + 3 * i:8 + 3 * i, 5:23] = 1.0
        x[i, 6:22, 10 + 2 * i:13 + 2 * i] = 0.9
    return x


# --- integrated gradients -----------------------------------------------------------------

@pytest.mark.parametrize("notation", [NOTATION, "4M3-P2-8C3-D10", "8C3P-R8S2-GAP-D10"])
def test_integrated_gradients_complete_within_5_percent(notation):
    model = build_model(notation, (28, 28, 1), DIGITS, seed=3)
    x = digit_batch()
    targets = np.array([0, 3, 5, 9])
    attr = integrated_gradients(model, x, targets)  # default: black baseline, 64 steps
    gap = (logits_of(model, x) - logits_of(model, np.zeros_like(x)))[np.arange(4), targets]
    assert attr.shape == (4, 28, 28)
    np.testing.assert_allclose(attr.reshape(4, -1).sum(axis=1), gap, rtol=0.05)


def test_integrated_gradients_complete_on_a_trained_model(mnist_trained):
    model, x, labels = mnist_trained
    gap = (logits_of(model, x) - logits_of(model, np.zeros_like(x)))[np.arange(len(x)), labels]
    attr = integrated_gradients(model, x, labels)
    np.testing.assert_allclose(attr.reshape(len(x), -1).sum(axis=1), gap, rtol=0.05)
    # Without the check's extra steps, 64 steps already come close on most images.
    plain = integrated_gradients(model, x, labels, tolerance=None)
    error = np.abs(plain.reshape(len(x), -1).sum(axis=1) - gap) / np.abs(gap)
    assert np.median(error) < 0.01


def test_integrated_gradients_baseline_white_and_errors():
    model = build_model("4C3-D10", (28, 28, 1), DIGITS, seed=0)
    x = digit_batch(2)
    white = integrated_gradients(model, x, 1, baseline="white")
    gap = (logits_of(model, x) - logits_of(model, np.ones_like(x)))[:, 1]
    np.testing.assert_allclose(white.reshape(2, -1).sum(axis=1), gap, rtol=0.05)
    with pytest.raises(ConfigError, match="baseline"):
        integrated_gradients(model, x, 1, baseline="grey")
    with pytest.raises(ConfigError, match="images: expected shape"):
        integrated_gradients(model, np.zeros((2, 14, 14, 1)), 1)


# --- Grad-CAM -----------------------------------------------------------------------------

def independent_gradcam(model, x: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM by hand for "4C3-8C3-D10": the second convolution's output (ReLU inside the
    layer), its channels weighted by their mean gradient, summed, ReLU."""
    conv1, conv2, flatten, logits = model.stack
    with tf.GradientTape() as tape:
        features = conv2(conv1(tf.constant(x)))
        score = logits(flatten(features))[:, target]
    grads = tape.gradient(score, features).numpy()
    cam = (grads.mean(axis=(1, 2), keepdims=True) * features.numpy()).sum(axis=-1)
    return np.maximum(cam, 0)


def test_gradcam_equals_an_independent_computation():
    model = build_model("4C3-8C3-D10", (28, 28, 1), DIGITS, seed=1)
    x = digit_batch(3)
    for target in (2, 7):
        cam = independent_gradcam(model, x, target)  # 24×24, centres at pixels 2..25
        heat = gradcam(model, x, target)
        assert heat.shape == (3, 28, 28)
        for i in range(3):
            assert cam[i].max() > 0
            np.testing.assert_allclose(heat[i, 2:26, 2:26], cam[i] / cam[i].max(), atol=1e-5)
            np.testing.assert_allclose(heat[i, 0], heat[i, 2])  # edges: the nearest centre
            np.testing.assert_allclose(heat[i, :, 27], heat[i, :, 25])


def test_gradcam_skips_a_1x1_last_convolution():
    # The tutorial network's last convolution gives 1×1 maps: a constant heatmap.
    model = build_model("32C3-P2-32C3-P2-32C5S2-BN-DO40-D128-D10", (28, 28, 1), DIGITS, 0)
    heat = gradcam(model, digit_batch(2), 4)
    assert heat.std(axis=(1, 2)).min() > 0
    last = gradcam(model, digit_batch(2), 4, layer="conv3")
    assert np.ptp(last[0]) == 0


def test_gradcam_needs_a_convolution():
    model = build_model("D16-D10", (28, 28, 1), DIGITS, seed=0)
    with pytest.raises(ModelSpecError, match="no convolution.*Grad-CAM"):
        gradcam(model, digit_batch(1), 0)
    assert integrated_gradients(model, digit_batch(1), 0).shape == (1, 28, 28)
    assert occlusion(model, digit_batch(1), 0).shape == (1, 28, 28)
    with pytest.raises(ModelSpecError, match="no convolution"):
        explain_images(model, digit_batch(1), "all")


def nested_backbone_model() -> keras.Model:
    """A functional classifier around a nested functional "backbone", as keras:NAME makes."""
    # Seeded initializers: an unseeded draw can leave every Grad-CAM value at zero (all-ReLU
    # maps), which made this test fail once in CI.
    def init(seed: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seed)

    inner_in = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="b_conv1",
                            kernel_initializer=init(1))(inner_in)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="b_dw",
                                     depthwise_initializer=init(2))(h)
    h = keras.layers.Conv2D(16, 1, activation="relu", name="b_last",
                            kernel_initializer=init(3))(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    x = keras.Input((32, 32, 3))
    y = keras.layers.Rescaling(2.0, offset=-1.0)(x)
    y = keras.layers.GlobalAveragePooling2D()(backbone(y))
    model = keras.Model(x, keras.layers.Dense(3, kernel_initializer=init(4))(y), name="transfer")
    model.image_shape, model.class_names, model.preprocessing = (32, 32, 3), ("a", "b", "c"), \
        "scale"
    return model


def test_gradcam_finds_the_last_convolution_inside_a_nested_backbone():
    model = nested_backbone_model()
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    heat = gradcam(model, x, [0, 2])
    # Independently: the backbone split at its last convolution.
    backbone = model.get_layer("backbone")
    inner = keras.Model(backbone.input, backbone.get_layer("b_last").output)
    head = model.layers[-2:]  # global pooling, dense
    with tf.GradientTape() as tape:
        features = inner(model.layers[1](tf.constant(x)))
        tape.watch(features)
        logits = head[1](head[0](features))
        score = tf.reduce_sum(tf.gather(logits, [0, 2], axis=1, batch_dims=1))
    grads = tape.gradient(score, features).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * features.numpy()).sum(-1), 0)
    expected = tf.image.resize(cam[..., None], (32, 32), method="bilinear").numpy()[..., 0]
    assert (expected.max(axis=(1, 2)) > 0).all()  # a map worth comparing
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(heat, expected, atol=1e-4)
    # The recording wrappers are gone afterwards.
    assert all("call" not in vars(layer) for layer in backbone.layers)
    names = [name for name, _ in feature_maps(model, x[0])]
    assert names == ["b_conv1", "b_dw", "b_last"]


@pytest.mark.slow  # building MobileNetV3Small and its gradients: ~10 s
def test_a_keras_backbone_model_is_explained_inside_its_backbone():
    from tfcnn.explain.graph import conv_layers
    from tfcnn.explain.live import LiveExplainer
    from tfcnn.models.backbones import build_backbone_model

    model = build_backbone_model("keras:MobileNetV3Small", (64, 64, 3), ("a", "b", "c"), 0,
                                 weights="none")
    convs = conv_layers(model)
    assert model.preprocess not in convs  # the fixed input conversion is no feature
    assert all(any(c is layer for layer in model.backbone.layers) for c in convs)
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    heat = gradcam(model, x, [0, 2])
    assert heat.shape == (2, 64, 64) and heat.max() == pytest.approx(1.0)
    live = LiveExplainer(model).explain(x[1], 2)
    np.testing.assert_allclose(live.heatmap, heat[1], atol=1e-4)
    assert first_layer_filters(model)[1].shape == (3, 3, 3, 16)


# --- occlusion ----------------------------------------------------------------------------

def test_occlusion_map_predicts_what_blanking_does(mnist_trained):
    model, x, labels = mnist_trained
    patch = 4
    maps = occlusion(model, x[:6], labels[:6], patch=patch, stride=patch)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(x[:6]), axis=-1))
    for i in range(6):
        r, c = np.unravel_index(np.argmax(maps[i]), maps[i].shape)
        r, c = r - r % patch, c - c % patch  # the patch (stride = patch) holding the peak
        blanked = x[i].copy()
        blanked[r:r + patch, c:c + patch] = 0
        drop = probs[i, labels[i]] - keras.ops.convert_to_numpy(
            keras.ops.softmax(model(blanked[None]), axis=-1))[0, labels[i]]
        assert drop == pytest.approx(maps[i].max(), abs=1e-4)
        assert drop > 0
        assert maps[i].max() > maps[i][:4, :4].max()  # more than blanking a corner


def test_occlusion_checks_its_patch():
    model = build_model("4C3-D10", (28, 28, 1), DIGITS, seed=0)
    with pytest.raises(ConfigError, match="patch 40"):
        occlusion(model, digit_batch(1), 0, patch=40)


# --- sanity check (Adebayo et al. 2018) ---------------------------------------------------

@pytest.mark.parametrize("method", ["gradcam", "integrated-gradients", "occlusion"])
def test_maps_of_reinitialised_weights_do_not_match_trained_ones(mnist_trained, method):
    model, x, labels = mnist_trained
    fresh = build_model(NOTATION, (28, 28, 1), DIGITS, seed=7)  # weights re-initialised
    trained, random = (attributions(m, x, labels, method) for m in (model, fresh))
    scores = [spearman(a, b) for a, b in zip(trained, random, strict=True)]
    # A constant map (Grad-CAM all zero: nothing in the layer speaks for the class) ranks
    # nothing: it counts as no correlation.
    assert np.mean(np.nan_to_num(scores)) < 0.5
    assert sum(np.isnan(scores)) <= len(scores) // 4


# --- explain_images, feature maps, the figure ------------------------------------------

def test_explain_images_on_rgb_input():
    model = build_model("4C3-P2-8C3-D3", (20, 24, 3), ("cat", "dog", "fox"), seed=0)
    x = np.random.default_rng(1).random((2, 20, 24, 3)).astype(np.float32)
    explained = explain_images(model, x, "all", targets="dog", sources=["a.png", "b.png"])
    assert [e.target_label for e in explained] == ["dog", "dog"]
    e = explained[0]
    assert isinstance(e, Explanation)
    assert sorted(e.heatmaps) == ["gradcam", "integrated-gradients", "occlusion"]
    assert all(h.shape == (20, 24) for h in e.heatmaps.values())
    assert e.prediction.source == "a.png" and len(e.prediction.top_k) == 3
    fig = e.figure()
    assert len(fig.axes) >= 5  # input, top classes, three heatmaps (+ colour bars)
    assert first_layer_filters(model)[1].shape == (3, 3, 3, 4)


def test_explain_images_default_target_is_the_prediction():
    model = build_model("4C3-8C3-D10", (28, 28, 1), DIGITS, seed=1)
    x = digit_batch(3)
    explained = explain_images(model, x)
    predicted = logits_of(model, x).argmax(axis=1)
    assert [e.target for e in explained] == list(predicted)
    assert [e.prediction.index for e in explained] == list(predicted)
    assert list(explained[0].heatmaps) == ["gradcam"]
    with pytest.raises(ConfigError, match="'eleven' is not a class"):
        explain_images(model, x, targets="eleven")
    with pytest.raises(ConfigError, match="not an explanation method"):
        explain_images(model, x, methods="saliency")


def test_feature_maps_of_a_mirror_network():
    model = build_model("4M3-P2-8C3-D10", (28, 28, 1), DIGITS, seed=0)
    maps = feature_maps(model, digit_batch(1)[0])
    assert [(name, m.shape) for name, m in maps] == [("mirrorconv1", (26, 26, 4)),
                                                     ("conv1", (11, 11, 8))]
    assert all(m.min() >= 0 for _, m in maps)  # after each layer's ReLU
    name, kernel = first_layer_filters(model)
    assert name == "mirrorconv1" and kernel.shape == (3, 3, 1, 4)
    np.testing.assert_allclose(kernel[..., 2:], kernel[:, ::-1, :, :2])  # mirror pairs
    heat = gradcam(model, digit_batch(2), 3)
    assert heat.shape == (2, 28, 28) and heat.max() <= 1


def test_importing_explain_does_not_import_tensorflow():
    code = ("import sys, tfcnn.explain; from tfcnn.explain import Explanation, METHODS; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
