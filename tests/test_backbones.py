"""keras: backbones: building, weights from a file (never downloaded), the frozen and the
fine-tuning phases, saving and reloading, and the one-line errors for bad input."""

import numpy as np
import pytest

from tfcnn.core.errors import ConfigError, ModelSpecError
from tfcnn.spec import backbones as bs

keras = pytest.importorskip("keras")

from tfcnn.models.backbones import (  # noqa: E402
    BackboneModel,
    build_backbone_model,
    set_backbone_trainable,
)

SPEC = "keras:MobileNetV3Small"  # the smallest: ~0.9 M weights, builds in about a second
SIZE = (32, 32, 3)
CLASSES = tuple("abcd")


def images(n: int = 8, shape: tuple[int, int, int] = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def small(seed: int = 0, **kwargs) -> BackboneModel:
    return build_backbone_model(SPEC, kwargs.pop("shape", SIZE), CLASSES, seed, **kwargs)


def arrays(variables) -> list[np.ndarray]:
    return [np.array(v) for v in variables]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def steps(model: BackboneModel, n: int = 2, lr: float = 0.1) -> None:
    """A few gradient steps over the model's trainable variables, as the training loop does."""
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(lr)
    x, y = images(), np.arange(8) % len(CLASSES)
    for _ in range(n):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=True), from_logits=True)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A randomly initialised backbone (seed 1) and its weights file, made once."""
    source = small(1)
    path = tmp_path_factory.mktemp("weights") / "mine.weights.h5"
    source.backbone.save_weights(path)
    return source, path


def test_unknown_backbone_names_the_known_ones_in_one_line():
    with pytest.raises(ModelSpecError) as err:
        bs.backbone_of("keras:MobileNetV9")
    assert "unknown keras.applications backbone" in str(err.value)
    assert "MobileNetV3Small" in str(err.value) and "\n" not in str(err.value)


def test_imagenet_weights_missing_from_the_cache_name_the_file_and_its_address(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        small(weights="imagenet")
    message = str(err.value)
    expected = tmp_path / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert str(expected) in message and "\n" not in message
    assert "https://storage.googleapis.com/" in message and "does not download" in message


def test_a_missing_weights_path_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        small(weights=str(tmp_path / "nothing.weights.h5"))


def test_logits_for_rgb_and_grey_images_and_seeded_initial_weights(saved):
    model = small(3)
    assert np.asarray(model(images())).shape == (8, 4)
    grey = small(3, shape=(32, 32, 1))
    x = images(shape=(32, 32, 1))
    np.testing.assert_allclose(np.asarray(grey(x)), np.asarray(model(np.repeat(x, 3, -1))),
                               atol=1e-5)  # grey repeated to 3 channels, same weights
    assert same(arrays(grey.backbone.weights), arrays(model.backbone.weights))
    assert not same(arrays(saved[0].backbone.weights), arrays(model.backbone.weights))


def test_inputs_are_scaled_to_0_255_for_the_backbone():
    model = small(1)
    x = images()
    features = model.backbone(x * 255.0, training=False)
    expected = model.logits(model.gap(features))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), atol=1e-4)


@pytest.mark.parametrize("family", ["mobilenet_v3", "mobilenet_v2", "resnet", "densenet"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_input_map_is_the_familys_preprocessing(family, channels):
    import tensorflow as tf

    from tfcnn.models.backbones import input_map

    kernel, bias = input_map(family, channels)
    x = images(shape=(5, 6, channels), seed=2)
    mapped = tf.nn.conv2d(x, kernel, 1, "VALID") + bias
    rgb = np.repeat(x, 3, axis=-1) if channels == 1 else x
    module = getattr(keras.applications, family)
    expected = module.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(mapped.numpy(), np.asarray(expected), rtol=1e-5, atol=1e-3)
    assert family == "mobilenet_v3" or not np.allclose(mapped.numpy(), rgb * 255.0, atol=1)


def test_the_stack_as_a_functional_model_computes_the_same_with_stock_layers():
    model = small(3, shape=(32, 32, 1))
    y = inputs = keras.Input((32, 32, 1))
    for layer in model.stack:
        y = layer(y)
    plain = keras.Model(inputs, y)
    x = images(shape=(32, 32, 1))
    np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(model(x)), atol=1e-5)
    assert not model.preprocess.trainable


def test_weights_file_loads_into_the_backbone(saved):
    source, path = saved
    model = small(2, weights=str(path))
    assert same(arrays(model.backbone.weights), arrays(source.backbone.weights))
    assert model.frozen_statistics  # pretrained: batch norms stay in inference mode


def test_imagenet_weights_come_from_keras_cache_as_keras_names_them(
        saved, tmp_path, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = saved[0]
    cache = tmp_path / "models"
    cache.mkdir()
    # Keras's own ImageNet files are legacy HDF5 weight files: write one the same way.
    with h5py.File(cache / bs.BACKBONES["mobilenetv3small"].weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source.backbone)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = small(6, weights="imagenet")
    assert same(arrays(model.backbone.weights), arrays(source.backbone.weights))


def test_a_weights_file_of_another_network_is_one_clear_line(tmp_path):
    other = keras.applications.MobileNetV2(input_shape=SIZE, include_top=False, weights=None,
                                           alpha=0.35)
    other.save_weights(tmp_path / "v2.weights.h5")
    with pytest.raises(ModelSpecError) as err:
        small(weights=str(tmp_path / "v2.weights.h5"))
    message = str(err.value)
    assert message.startswith(f"--weights {tmp_path / 'v2.weights.h5'}: does not fit {SPEC}")
    assert "\n" not in message


def test_images_smaller_than_the_backbone_allows_are_one_line():
    with pytest.raises(ModelSpecError, match=r"cannot be built for 28x28 images") as err:
        small(shape=(28, 28, 1))
    assert "\n" not in str(err.value)


def test_frozen_phase_trains_only_the_head(saved):
    model = small(2, weights=str(saved[1]))
    assert set_backbone_trainable(model, False) == []
    assert {v.path for v in model.trainable_variables} == {v.path for v in model.logits.weights}
    backbone, head = arrays(model.backbone.weights), arrays(model.logits.weights)
    steps(model)
    assert same(arrays(model.backbone.weights), backbone)  # batch-norm statistics too
    assert not same(arrays(model.logits.weights), head)


def test_fine_tuning_unfreezes_what_it_says_and_keeps_batch_norm_statistics(saved):
    model = small(2, weights=str(saved[1]))
    set_backbone_trainable(model, False)
    named = set_backbone_trainable(model, True, fine_tune_layers=10)
    weighted = [layer for layer in model.backbone.layers if layer.weights]
    last = weighted[-10:]
    assert named == [layer.name for layer in last
                     if not isinstance(layer, keras.layers.BatchNormalization)]
    assert named and all(layer.trainable for layer in weighted if layer.name in named)
    assert not any(layer.trainable for layer in weighted[:-10])
    norms = [layer for layer in model.backbone.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    statistics = arrays(v for layer in norms for v in layer.weights)
    frozen = arrays(v for layer in weighted[:-10] for v in layer.weights)
    tuned = arrays(v for layer in last for v in layer.trainable_weights)
    steps(model)
    assert same(arrays(v for layer in norms for v in layer.weights), statistics)
    assert same(arrays(v for layer in weighted[:-10] for v in layer.weights), frozen)
    assert not same(arrays(v for layer in last for v in layer.trainable_weights), tuned)
    everything = set_backbone_trainable(model, True)
    assert len(everything) == len([layer for layer in weighted if not isinstance(
        layer, keras.layers.BatchNormalization)])


def test_a_backbone_from_scratch_trains_its_batch_norms():
    model = small(2)  # weights "none"
    assert not model.frozen_statistics
    norm = next(layer for layer in model.backbone.layers
                if isinstance(layer, keras.layers.BatchNormalization))
    before = arrays(norm.weights)
    steps(model, n=1)
    assert not same(arrays(norm.weights), before)


def test_saved_model_reloads_through_the_one_loader_with_the_same_outputs(tmp_path):
    from tfcnn.models.loader import load_checked_model

    model = small(7)
    steps(model, n=1)
    model.save(tmp_path / "b.keras")
    loaded = load_checked_model(tmp_path / "b.keras")
    assert isinstance(loaded, BackboneModel)
    assert (loaded.spec, loaded.notation, loaded.class_names, loaded.image_shape) == (
        SPEC, SPEC, CLASSES, SIZE)
    assert (loaded.preprocessor.prepare, loaded.precision, loaded.seed) == (None, "float32", 7)
    x = images(seed=3)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)


def test_backbone_phase_freezes_for_the_first_epochs_then_fine_tunes(saved):
    from tfcnn.models.backbones import backbone_phase

    model = small(2, weights=str(saved[1]))
    head = {v.path for v in model.logits.weights}
    phases = []
    for epoch in range(4):
        phases.append(backbone_phase(model, epoch, freeze_epochs=2, fine_tune_layers=5))
        trainable = {v.path for v in model.trainable_variables}
        assert (trainable == head) == (epoch < 2)
    assert phases == ["head", "head", "fine-tune", "fine-tune"]
    scratch = small(2)
    assert backbone_phase(scratch, 0, freeze_epochs=2) == "all"
    assert len(scratch.trainable_variables) > len(model.trainable_variables)


def test_mixed_bfloat16_backbone_computes_in_bf16_and_reloads_as_float32(saved, tmp_path):
    from tfcnn.models.network import load_model

    model = small(2, weights=str(saved[1]), precision="mixed_bfloat16")
    assert {layer.compute_dtype for layer in model.backbone.layers[1:]} == {"bfloat16"}
    assert model.logits.compute_dtype == "float32" and model.preprocess.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    assert same(arrays(model.backbone.weights), arrays(saved[0].backbone.weights))
    x = images(seed=4)
    logits = model(x)
    assert logits.dtype == "float32"
    plain = small(2, weights=str(saved[1]))
    scale = float(np.abs(np.asarray(plain(x))).max())
    np.testing.assert_allclose(np.asarray(logits), np.asarray(plain(x)), atol=0.05 * scale)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.precision == "float32" and isinstance(loaded, BackboneModel)
    assert {layer.compute_dtype for layer in loaded.backbone.layers} == {"float32"}
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(plain(x)), atol=1e-5)
