"""Training photo models: photo augmentation and mixing in the step, class weights, the
phases of a `keras:` backbone (frozen, then fine-tuned) with exact resume, export, top-5."""

import shutil

import numpy as np
import pytest

from support import load_weights, make_shapes, same_weights
from tfcnn.core.config import TrainConfig
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run

# (a stride-2 residual block after a convolution crashed oneDNN on a last, smaller batch:
# reported; not what these tests are about)
NET = "8C3p-BN-R8-P2-GAP-D3"
PHOTO = {"crop_area": 0.35, "hflip": True, "brightness": 0.2, "contrast": 0.2,
         "saturation": 0.3, "hue": 0.05}
BACKBONE = "keras:MobileNetV3Small"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("photos") / "shapes", per_class=8)


def photo_config(folder, **settings) -> TrainConfig:
    return TrainConfig(**{"dataset": f"folder:{folder}", "grayscale": False, "image_size": "32",
                          "model": NET, "epochs": 2, "batch_size": 8, "seed": 3, "lr": 0.01,
                          "test_split": 0.25, **settings})


def train_photos(folder, out, resume=False, **settings):
    return train_run(photo_config(folder, **settings), out, Hooks(), resume=resume)


def first_loss(result) -> float:
    return result.epochs[0]["loss"]


def test_photo_augmented_run_trains_and_resumes_exactly(shapes, tmp_path):
    settings = {**PHOTO, "mixup": 0.2, "cutmix": 1.0}
    straight = train_photos(shapes, tmp_path / "straight", **settings)
    train_photos(shapes, tmp_path / "run", epochs=1, **settings)
    resumed = train_photos(shapes, tmp_path / "run", resume=True, **settings)
    assert [r["epoch"] for r in resumed.epochs] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in resumed.epochs)
    assert same_weights(load_weights(resumed.run_dir / "model.keras"),
                        load_weights(straight.run_dir / "model.keras"))
    plain = train_photos(shapes, tmp_path / "plain", epochs=1)
    assert first_loss(plain) != first_loss(resumed)  # the augmentation did something


def test_mixup_and_class_weights_change_the_loss(shapes, tmp_path):
    plain = first_loss(train_photos(shapes, tmp_path / "plain", epochs=1))
    mixed = first_loss(train_photos(shapes, tmp_path / "mixup", epochs=1, mixup=0.4))
    assert mixed != plain
    imbalanced = tmp_path / "imbalanced"
    shutil.copytree(shapes, imbalanced)
    for extra in sorted((imbalanced / "circle").iterdir())[2:]:
        extra.unlink()
    lopsided = first_loss(train_photos(imbalanced, tmp_path / "lopsided", epochs=1))
    balanced = first_loss(train_photos(imbalanced, tmp_path / "balanced", epochs=1,
                                       class_weight="balanced"))
    assert balanced != lopsided


def test_balanced_class_weights_are_n_over_classes_times_count():
    from tfcnn.training.photo import balanced_class_weights

    weights = balanced_class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights == pytest.approx([6 / 12, 6 / 4, 6 / 8, 1.0])  # class 3 has no image


def test_step_loss_is_the_weighted_mix_of_both_labels_losses():
    import keras
    import tensorflow as tf

    from tfcnn.data.augment import step_seed
    from tfcnn.data.photo_augment import PhotoAugmentation, mix_batch
    from tfcnn.models.network import build_model
    from tfcnn.training.steps import make_steps

    model = build_model("4C3p-GAP-D3", (8, 8, 3), ("a", "b", "c"), seed=0)
    optimizer = keras.optimizers.SGD(learning_rate=0.0)  # the model stays as it is
    photo = PhotoAugmentation(mixup=0.4, cutmix=1.0)
    weights = [0.5, 2.0, 1.0]
    steps = make_steps(model, optimizer, (8, 8, 3), seed=9, photo=photo, class_weights=weights)
    rng = np.random.default_rng(0)
    images = rng.random((6, 8, 8, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    steps.train(iter(tf.data.Dataset.from_tensors((images, labels)).repeat()),
                tf.constant(1, tf.int64))
    mixed, partners, own = mix_batch(tf.constant(images), tf.constant(labels),
                                     step_seed(9, tf.constant(0)), photo)
    logits = model(mixed, training=True)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    w = tf.constant(weights)
    expected = (own * ce(labels, logits) * tf.gather(w, labels)
                + (1 - own) * ce(partners, logits) * tf.gather(w, partners))
    assert not np.allclose(own.numpy(), 1.0)  # pairs were really mixed
    assert float(steps.train_metrics[0].result()) == pytest.approx(float(np.mean(expected)),
                                                                   rel=1e-5)


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A randomly initialised MobileNetV3Small's weights, standing in for ImageNet's."""
    from tfcnn.models.backbones import build_backbone_model

    model = build_backbone_model(BACKBONE, (32, 32, 3), ("circle", "square", "triangle"),
                                 seed=11)
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    model.backbone.save_weights(path)
    return path, model.backbone.get_weights()


def _backbone_weights(run_dir):
    from tfcnn.models.network import load_model

    return load_model(run_dir / "model.keras").backbone.get_weights()


@pytest.mark.slow
def test_frozen_phase_trains_the_head_then_fine_tuning_resumes_exactly(
        shapes, backbone_file, tmp_path):
    path, initial = backbone_file
    settings = {"model": BACKBONE, "weights": str(path), "freeze_epochs": 1, "lr": 0.01,
                "fine_tune_lr": 0.01, "schedule": "constant"}
    frozen = train_photos(shapes, tmp_path / "run", epochs=1, **settings)
    assert same_weights(_backbone_weights(frozen.run_dir), initial)  # the backbone: untouched
    from tfcnn.models.backbones import build_backbone_model
    from tfcnn.models.network import load_model

    start = build_backbone_model(BACKBONE, (32, 32, 3), ("circle", "square", "triangle"),
                                 seed=3, weights=str(path))
    head = load_model(frozen.run_dir / "model.keras").logits.get_weights()
    assert not np.array_equal(head[0], start.logits.get_weights()[0])  # the head trained
    resumed = train_photos(shapes, tmp_path / "run", resume=True, epochs=2, **settings)
    tuned = _backbone_weights(resumed.run_dir)
    assert not same_weights(tuned, initial)  # fine-tuning moved the backbone
    names = [v.path for v in load_model(resumed.run_dir / "model.keras").backbone.weights]
    for name, before, after in zip(names, initial, tuned, strict=True):
        if "moving_" in name:  # pretrained batch-norm statistics stay as they were
            assert np.array_equal(before, after), name
    straight = train_photos(shapes, tmp_path / "straight", epochs=2, **settings)
    assert same_weights(load_weights(resumed.run_dir / "model.keras"),
                        load_weights(straight.run_dir / "model.keras"))


@pytest.mark.slow
def test_fine_tune_layers_unfreezes_only_the_last_layers(shapes, backbone_file, tmp_path):
    from tfcnn.models.network import load_model

    path, initial = backbone_file
    result = train_photos(shapes, tmp_path / "run", epochs=1, model=BACKBONE, weights=str(path),
                          fine_tune_layers=2)
    backbone = load_model(result.run_dir / "model.keras").backbone
    weighted = [layer for layer in backbone.layers if layer.weights]
    last = {id(v) for layer in weighted[-2:] for v in layer.weights}
    changed = [v.path for v, before in zip(backbone.weights, initial, strict=True)
               if not np.array_equal(v.numpy(), before)]
    assert changed  # the last layers trained
    assert all(id(v) in last for v in backbone.weights if v.path in changed)


@pytest.mark.slow
def test_a_trained_backbone_model_exports_and_agrees(shapes, backbone_file, tmp_path):
    from support import probabilities
    from tfcnn.export import export_model
    from tfcnn.export.verify import verify_export
    from tfcnn.models.network import load_model

    path, _ = backbone_file
    result = train_photos(shapes, tmp_path / "run", epochs=1, model=BACKBONE, weights=str(path),
                          freeze_epochs=1)
    model_file = result.run_dir / "model.keras"
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), np.uint8)
    expected = np.asarray(probabilities(load_model(model_file), pixels / np.float32(255)))
    for fmt, name in (("keras", "m.keras"), ("saved_model", "sm")):
        export_model(model_file, fmt, "none", tmp_path / name)
        np.testing.assert_allclose(verify_export(tmp_path / name, fmt, pixels), expected,
                                   atol=1e-5)


def test_report_has_top5_accuracy_from_ten_classes():
    from tfcnn.evaluation.report import EvalSet, build_report, format_evaluation

    rng = np.random.default_rng(0)

    def report(classes: int) -> dict:
        labels = np.arange(40) % classes
        probs = rng.random((40, classes))
        probs /= probs.sum(axis=1, keepdims=True)
        test = EvalSet("photos", np.zeros((40, 4, 4, 3), np.uint8), labels,
                       tuple(f"c{i}" for i in range(classes)), "here")
        losses = -np.log(probs[np.arange(40), labels])
        ranks = (probs > probs[np.arange(40), labels][:, None]).sum(axis=1)
        return build_report(test, probs, probs.argmax(axis=1), losses), ranks

    ten, ranks = report(10)
    assert ten["top5_accuracy"] == pytest.approx(float(np.mean(ranks < 5)))
    assert ten["test_accuracy"] <= ten["top5_accuracy"] < 1.0
    ten["model_file"] = "m.keras"
    assert f"Top-5 accuracy {100 * ten['top5_accuracy']:.2f}%" in format_evaluation(ten)
    three, _ = report(3)
    assert "top5_accuracy" not in three


def test_worst_images_grid_is_in_colour():
    from tfcnn.evaluation.plots import worst_images_figure

    red = np.zeros((2, 6, 6, 3), np.uint8)
    red[..., 0] = 255
    figure = worst_images_figure(red, [0, 1], [1, 1], [0.9, 0.8], ["a", "b"])
    shown = figure.axes[0].images[0].get_array()
    assert np.asarray(shown).shape == (6, 6, 3)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())
    reddish = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert reddish.sum() > 50


def test_train_flags_reach_every_new_setting():
    from tfcnn.cli_parser import build_parser

    args = build_parser().parse_args([
        "train", "--model", "keras:MobileNetV3Small", "--weights", "w.h5", "--freeze-epochs", "2",
        "--fine-tune-lr", "1e-4", "--fine-tune-layers", "30", "--crop-area", "0.35",
        "--brightness", "0.2", "--contrast", "0.3", "--saturation", "0.4", "--hue", "0.05",
        "--mixup", "0.2", "--cutmix", "1.0", "--class-weight", "balanced"])
    assert (args.weights, args.freeze_epochs, args.fine_tune_lr, args.fine_tune_layers) == (
        "w.h5", 2, 1e-4, 30)
    assert (args.crop_area, args.brightness, args.contrast, args.saturation, args.hue) == (
        0.35, 0.2, 0.3, 0.4, 0.05)
    assert (args.mixup, args.cutmix, args.class_weight) == (0.2, 1.0, "balanced")


def test_photo_preset_is_a_colour_gap_network_with_photo_augmentation():
    from tfcnn.core.presets import config_from_preset
    from tfcnn.spec.notation import parse_notation

    config = config_from_preset("photo", {"dataset": "folder:photos", "seed": 1})
    assert not config.grayscale and config.image_size and config.crop_area > 0 and config.hflip
    assert type(parse_notation(config.model)[-2]).__name__ == "GlobalPool"
    assert config_from_preset("photo", {"crop_area": 0.0}).crop_area == 0.0  # flags win


@pytest.mark.slow  # three exports, a TFLite conversion among them: ~15 s
def test_a_residual_photo_network_exports_to_every_format_and_agrees(shapes, tmp_path):
    from support import probabilities
    from tfcnn.export import FORMATS, export_model
    from tfcnn.export.verify import verify_export
    from tfcnn.models.network import load_model

    result = train_photos(shapes, tmp_path / "run", epochs=1, precision="mixed_bfloat16",
                          **PHOTO)
    model_file = result.run_dir / "model.keras"
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), np.uint8)
    expected = np.asarray(probabilities(load_model(model_file), pixels / np.float32(255)))
    names = {"keras": "m.keras", "saved_model": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}
    for fmt in FORMATS:
        out = tmp_path / names[fmt]
        export_model(model_file, fmt, "none", out)
        np.testing.assert_allclose(verify_export(out, fmt, pixels), expected, atol=1e-4)
    export_model(model_file, "tflite", "float16", tmp_path / "half.tflite")
    half = verify_export(tmp_path / "half.tflite", "tflite", pixels)
    assert (half.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 5 / 6
