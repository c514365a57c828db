"""In-graph augmentation: shapes, determinism by seed, label-preserving size, exact flips."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from support import tiny_digits  # noqa: E402
from tfcnn.data.augment import Augmentation, augment_images, step_seed  # noqa: E402

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
