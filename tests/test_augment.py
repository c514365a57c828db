"""In-graph augmentation: shapes, determinism by seed, label-preserving size, exact flips."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from support import tiny_digits  # noqa: E402
from tfcnn.data.augment import (  # noqa: E402
    Augmentation,
    augment_images,
    elastic_displacements,
    gaussian_kernel,
    sample_bilinear,
    step_seed,
)

DIGITS = Augmentation(shift=2.5, rotate=10, zoom=0.1)


def batch(n: int = 32) -> tf.Tensor:
    images = tiny_digits(n_train=n).x_train.astype(np.float32) / 255
    return tf.constant(images[..., None])


def centre_of_mass(image: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(image.shape[:2])
    mass = image[..., 0].sum()
    return np.array([(ys * image[..., 0]).sum(), (xs * image[..., 0]).sum()]) / mass


def test_shape_and_dtype_are_kept_for_any_size_and_channels():
    images = tf.random.stateless_uniform((5, 17, 23, 3), seed=[1, 2])
    out = augment_images(images, Augmentation(shift=3, rotate=20, zoom=0.2, hflip=True),
                         step_seed(0, tf.constant(4)))
    assert out.shape == images.shape and out.dtype == tf.float32
    assert not np.allclose(out.numpy(), images.numpy())


def test_same_seed_same_images_other_step_or_seed_other_images():
    images = batch()
    first = augment_images(images, DIGITS, step_seed(7, tf.constant(3))).numpy()
    again = augment_images(images, DIGITS, step_seed(7, tf.constant(3))).numpy()
    next_step = augment_images(images, DIGITS, step_seed(7, tf.constant(4))).numpy()
    other_seed = augment_images(images, DIGITS, step_seed(8, tf.constant(3))).numpy()
    other_replica = augment_images(images, DIGITS, step_seed(7, tf.constant(3), 1)).numpy()
    assert np.array_equal(first, again)
    for other in (next_step, other_seed, other_replica):
        assert not np.allclose(first, other)


def test_no_augmentation_returns_the_images_unchanged():
    images = batch(4)
    assert augment_images(images, Augmentation(), step_seed(0, tf.constant(0))) is images


def test_digits_stay_in_frame_and_move_within_the_shift_limit():
    # What keeps the label: the ink stays (rotation/zoom/shift are small) and the digit moves
    # no further than the shift limit plus what a 10% zoom about the centre can add.
    images = batch(64)
    out = augment_images(images, DIGITS, step_seed(3, tf.constant(9))).numpy()
    src = images.numpy()
    for a, b in zip(src, out, strict=True):
        assert 0.75 < b.sum() / a.sum() < 1.3
        moved = np.abs(centre_of_mass(b) - centre_of_mass(a))
        assert moved.max() <= 2.5 + 0.1 * 14 + 0.5
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_shift_only_moves_the_centre_of_mass_by_a_random_amount_within_the_limit():
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 10:18, 10:18] = 1  # a block well inside, so nothing leaves the frame
    images = tf.constant(np.repeat(image, 200, axis=0))
    out = augment_images(images, Augmentation(shift=3), step_seed(1, tf.constant(0))).numpy()
    moves = np.array([centre_of_mass(o) - centre_of_mass(image[0]) for o in out])
    assert np.abs(moves).max() <= 3 + 1e-3
    assert np.abs(moves).max() > 2  # the range is used, not just tiny moves
    assert abs(moves.mean()) < 0.5  # both directions


def test_flip_gives_either_the_image_or_its_exact_mirror_about_half_each():
    images = batch(200)
    out = augment_images(images, Augmentation(hflip=True), step_seed(5, tf.constant(1))).numpy()
    src = images.numpy()
    same = [np.allclose(o, s, atol=1e-6) for o, s in zip(out, src, strict=True)]
    mirrored = [np.allclose(o, s[:, ::-1], atol=1e-6) for o, s in zip(out, src, strict=True)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert 60 < sum(mirrored) < 140


def test_random_erasing_blanks_one_rectangle_in_about_p_of_the_images():
    images = tf.ones((400, 28, 28, 1))
    out = augment_images(images, Augmentation(erase=0.5), step_seed(2, tf.constant(5))).numpy()
    erased = 1 - out.mean(axis=(1, 2, 3))
    hit = erased > 0
    assert 150 < hit.sum() < 250
    # Each blank is one axis-aligned rectangle of 2-25% of the image (rounded to pixels).
    assert erased[hit].min() > 0.005 and erased[hit].max() < 0.32
    for image in out[hit][:20, ..., 0]:
        rows, cols = np.nonzero(image == 0)
        box = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert np.all(box == 0)
    again = augment_images(images, Augmentation(erase=0.5), step_seed(2, tf.constant(5)))
    assert np.array_equal(out, again.numpy())
    none = augment_images(images, Augmentation(erase=0.0, shift=0.0), step_seed(2, tf.constant(5)))
    assert none is images


def grid(batch: int, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    y, x = np.mgrid[:height, :width].astype(np.float32)
    return tf.constant(np.tile(y, (batch, 1, 1))), tf.constant(np.tile(x, (batch, 1, 1)))


def test_sampling_a_shifted_grid_is_an_exact_shift_with_zero_fill():
    images = tf.random.stateless_uniform((3, 9, 11, 2), seed=[4, 5])
    y, x = grid(3, 9, 11)
    out = sample_bilinear(images, y + 1, x - 2).numpy()
    src = images.numpy()
    # output (i, j) = input (i + 1, j - 2): rows move up by one, columns right by two
    np.testing.assert_allclose(out[:, :-1, 2:], src[:, 1:, :-2], rtol=1e-6)
    assert not out[:, -1].any() and not out[:, :, :2].any()


def test_sampling_half_a_pixel_off_averages_the_four_neighbours():
    images = tf.constant(np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1))
    y, x = grid(1, 3, 4)
    out = sample_bilinear(images, y + 0.5, x + 0.5).numpy()[0, :, :, 0]
    src = images.numpy()[0, :, :, 0]
    expected = (src[:-1, :-1] + src[:-1, 1:] + src[1:, :-1] + src[1:, 1:]) / 4
    np.testing.assert_allclose(out[:-1, :-1], expected, rtol=1e-6)


def test_elastic_and_affine_warps_resample_once_in_one_map():
    # With a negligible elastic field the one-pass map must give what the affine op gives
    # (same draws): the composition follows TensorFlow's transform convention exactly.
    images = batch(16)
    seed = step_seed(2, tf.constant(5))
    warp = Augmentation(shift=2.5, rotate=10, zoom=0.1, hflip=True)
    affine = augment_images(images, warp, seed).numpy()
    both = augment_images(images, dataclasses.replace(warp, elastic=1e-4), seed).numpy()
    np.testing.assert_allclose(both, affine, atol=2e-3)


def test_gaussian_kernel_sums_to_one_and_peaks_in_the_middle():
    kernel = gaussian_kernel(4.0).numpy()
    assert kernel.shape == (17,) and abs(kernel.sum() - 1) < 1e-6
    assert kernel.argmax() == 8 and np.allclose(kernel, kernel[::-1])


def test_elastic_field_is_smooth_seeded_and_scaled_by_alpha():
    seed = step_seed(1, tf.constant(2))
    field = elastic_displacements(tf.constant(16), 28, 28, 34.0, 4.0, seed).numpy()
    assert field.shape == (16, 28, 28, 2)
    # Smooth: neighbouring pixels move almost alike, far less than independent noise would.
    step = np.abs(np.diff(field, axis=1)).mean()
    assert step < 0.2 * np.abs(field).mean()
    # The two axes get independent fields (not one field used twice).
    assert np.corrcoef(field[..., 0].ravel(), field[..., 1].ravel())[0, 1] < 0.5
    # alpha scales the field linearly; the same seed draws the same field.
    half = elastic_displacements(tf.constant(16), 28, 28, 17.0, 4.0, seed).numpy()
    np.testing.assert_allclose(half * 2, field, rtol=1e-5, atol=1e-6)
    other = elastic_displacements(tf.constant(16), 28, 28, 34.0, 4.0,
                                  step_seed(1, tf.constant(3))).numpy()
    assert not np.allclose(other, field)


def test_elastic_distortion_keeps_the_digit_and_is_deterministic():
    images = batch(32)
    aug = Augmentation(elastic=34.0, elastic_sigma=4.0)
    out = augment_images(images, aug, step_seed(5, tf.constant(1))).numpy()
    again = augment_images(images, aug, step_seed(5, tf.constant(1))).numpy()
    src = images.numpy()
    assert np.array_equal(out, again) and not np.allclose(out, src)
    for a, b in zip(src, out, strict=True):
        assert 0.8 < b.sum() / a.sum() < 1.25  # the ink is moved, not lost
        assert np.abs(centre_of_mass(b) - centre_of_mass(a)).max() < 2.5
    assert out.min() >= 0 and out.max() <= 1 + 1e-6
