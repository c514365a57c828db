"""Photo augmentation in the graph: determinism by seed, shapes and ranges, exact flips,
colour jitter that keeps grey grey, mixup and cutmix weights that match the pixels."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfcnn.data.augment import step_seed  # noqa: E402
from tfcnn.data.photo_augment import (  # noqa: E402
    PhotoAugmentation,
    crop_boxes,
    mix_batch,
    photo_augment,
)

PHOTO = PhotoAugmentation(crop_area=0.35, hflip=True, brightness=0.2, contrast=0.3,
                          saturation=0.4, hue=0.05)


def photos(n: int = 8, size: tuple[int, int] = (20, 24), channels: int = 3,
           seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).random((n, *size, channels),
                                                          dtype=np.float32))


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_range_are_kept(channels):
    images = photos(channels=channels)
    out = photo_augment(images, step_seed(0, tf.constant(3)), PHOTO)
    assert out.shape == images.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    assert not np.allclose(out.numpy(), images.numpy(), atol=1e-3)


def test_same_seed_same_batch_other_seed_or_step_other_batch():
    images = photos()
    first = photo_augment(images, step_seed(7, tf.constant(5)), PHOTO).numpy()
    again = photo_augment(images, step_seed(7, tf.constant(5)), PHOTO).numpy()
    np.testing.assert_array_equal(first, again)
    for other in (step_seed(8, tf.constant(5)), step_seed(7, tf.constant(6))):
        assert not np.allclose(photo_augment(images, other, PHOTO).numpy(), first, atol=1e-3)


def test_same_in_a_compiled_function_as_eagerly():
    images = photos()
    compiled = tf.function(lambda x, s: photo_augment(x, s, PHOTO))
    seed = step_seed(1, tf.constant(2))
    np.testing.assert_allclose(compiled(images, seed).numpy(),
                               photo_augment(images, seed, PHOTO).numpy(), atol=1e-5)


def test_flip_alone_gives_each_image_or_its_exact_mirror_and_both_occur():
    images = photos(32)
    out = photo_augment(images, step_seed(0, tf.constant(1)), PhotoAugmentation(hflip=True))
    flipped = []
    for before, after in zip(images.numpy(), out.numpy(), strict=True):
        if np.allclose(after, before, atol=1e-5):
            flipped.append(False)
        else:
            np.testing.assert_allclose(after, before[:, ::-1], atol=1e-5)
            flipped.append(True)
    assert 0 < sum(flipped) < len(flipped)


def test_crop_boxes_keep_the_asked_share_of_the_area_inside_the_image():
    config = PhotoAugmentation(crop_area=0.3, crop_aspect=2.0)
    boxes = crop_boxes(tf.constant(500), config, step_seed(3, tf.constant(0))).numpy()
    top, left, bottom, right = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (bottom <= 1 + 1e-6).all() and (right <= 1 + 1e-6).all()
    area = (bottom - top) * (right - left)
    assert area.min() >= 0.3 - 1e-6 and area.max() <= 1 + 1e-6
    assert area.max() - area.min() > 0.5  # shares spread over the range


def test_a_crop_zooms_in_an_image_content_moves():
    images = photos(16)
    out = photo_augment(images, step_seed(0, tf.constant(0)), PhotoAugmentation(crop_area=0.3))
    # zooming in smooths: neighbouring pixels differ less than in the noise images
    assert np.abs(np.diff(out.numpy(), axis=2)).mean() < np.abs(np.diff(images.numpy(),
                                                                        axis=2)).mean()


def test_saturation_and_hue_leave_grey_pixels_grey_and_hue_keeps_the_grey_level():
    grey = tf.tile(photos(4, channels=1) * 0.5 + 0.25, [1, 1, 1, 3])
    config = PhotoAugmentation(saturation=0.9, hue=0.5)
    out = photo_augment(grey, step_seed(0, tf.constant(0)), config).numpy()
    np.testing.assert_allclose(out, grey.numpy(), atol=1e-4)
    colours = photos(4, seed=1) * 0.2 + 0.4  # mid-range: no clipping
    hued = photo_augment(colours, step_seed(0, tf.constant(0)), PhotoAugmentation(hue=0.5))
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(hued.numpy() @ luma, colours.numpy() @ luma, atol=1e-4)
    assert not np.allclose(hued.numpy(), colours.numpy(), atol=1e-2)


def test_brightness_and_contrast_change_grey_images_one_factor_per_image():
    images = photos(6, channels=1) * 0.5 + 0.25
    out = photo_augment(images, step_seed(2, tf.constant(0)),
                        PhotoAugmentation(brightness=0.1)).numpy()
    shift = (out - images.numpy()).reshape(6, -1)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], 1), atol=1e-5)
    assert np.unique(shift[:, 0].round(5)).size == 6


def test_inactive_config_returns_the_batch_itself():
    images = photos()
    assert photo_augment(images, step_seed(0, tf.constant(0)), PhotoAugmentation()) is images


def test_mixup_blends_each_image_with_its_partner_by_the_returned_weight():
    images, labels = photos(8), tf.range(8)
    mixed, partners, weight = mix_batch(images, labels, step_seed(0, tf.constant(0)),
                                        PhotoAugmentation(mixup=0.4))
    x, w = images.numpy(), weight.numpy()
    expected = w[:, None, None, None] * x + (1 - w[:, None, None, None]) * x[partners.numpy()]
    np.testing.assert_allclose(mixed.numpy(), expected, atol=1e-5)
    assert sorted(partners.numpy()) == list(range(8)) and ((w >= 0) & (w <= 1)).all()


def test_cutmix_weight_is_the_share_of_pixels_kept_from_the_image_itself():
    images, labels = photos(8), tf.range(8)
    mixed, partners, weight = mix_batch(images, labels, step_seed(1, tf.constant(0)),
                                        PhotoAugmentation(cutmix=1.0))
    x, m = images.numpy(), mixed.numpy()
    for i, j in enumerate(partners.numpy()):
        own = np.all(m[i] == x[i], axis=-1)
        if i != j:
            np.testing.assert_allclose(own.mean(), weight.numpy()[i], atol=1e-6)
            assert np.all(m[i][~own] == x[j][~own])


def test_mixing_is_seeded_and_off_by_default():
    images, labels = photos(8), tf.range(8)
    config = PhotoAugmentation(mixup=0.2, cutmix=1.0)
    a = mix_batch(images, labels, step_seed(0, tf.constant(4)), config)
    b = mix_batch(images, labels, step_seed(0, tf.constant(4)), config)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    same, partners, weight = mix_batch(images, labels, step_seed(0, tf.constant(4)),
                                       dataclasses.replace(config, mixup=0.0, cutmix=0.0))
    assert same is images and np.array_equal(partners.numpy(), labels.numpy())
    assert np.all(weight.numpy() == 1)


def test_works_in_a_training_step_signature_with_a_free_batch_size():
    spec = (tf.TensorSpec((None, 20, 24, 3), tf.float32), tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((2,), tf.int64))
    config = dataclasses.replace(PHOTO, mixup=0.2, cutmix=1.0)

    @tf.function(input_signature=spec)
    def step(images, labels, seed):
        mixed, partners, weight = mix_batch(photo_augment(images, seed, config), labels, seed,
                                            config)
        return mixed, partners, weight

    for n in (8, 5):  # the last, smaller batch: no retrace, same shapes out
        mixed, partners, weight = step(photos(n), tf.range(n), step_seed(0, tf.constant(n)))
        assert mixed.shape == (n, 20, 24, 3) and partners.shape == weight.shape == (n,)
    assert step.experimental_get_tracing_count() == 1
