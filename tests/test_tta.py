"""tfcnn.models.tta: shifted copies (zero fill, channels, any size), averaging, TTA of
stand-in models.

Pure numpy: no TensorFlow is imported, so these run in milliseconds.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tfcnn.core.errors import ModelSpecError, TfcnnError
from tfcnn.models.tta import (
    DEFAULT_SHIFTS,
    average_probabilities,
    mirror_images,
    shift_images,
    shifted_copies,
    tta_probabilities,
)


def _numbered(shape: tuple[int, ...]) -> np.ndarray:
    # 1, 2, 3, ...: no pixel is 0, so any 0 in a shifted copy was filled in.
    return np.arange(1, int(np.prod(shape)) + 1).reshape(shape)


# --- shifted copies ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 5, 7), (3, 4, 6, 3), (1, 1, 1), (2, 9, 2, 1)])
@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, -3),
                                        (-4, 5)])
def test_a_shift_moves_every_pixel_and_fills_with_zeros(shape, dy, dx):
    images = _numbered(shape)
    out = shift_images(images, dy, dx)
    assert out.shape == images.shape and out.dtype == images.dtype
    height, width = shape[1:3]
    for y in range(height):
        for x in range(width):
            source_y, source_x = y - dy, x - dx  # where this pixel's content came from
            inside = 0 <= source_y < height and 0 <= source_x < width
            expected = images[:, source_y, source_x] if inside else 0
            np.testing.assert_array_equal(out[:, y, x], expected)


def test_shifts_follow_the_documented_directions():
    image = np.zeros((1, 3, 3), np.uint8)
    image[0, 1, 1] = 255
    down, up = shift_images(image, 1, 0)[0], shift_images(image, -1, 0)[0]
    right, left = shift_images(image, 0, 1)[0], shift_images(image, 0, -1)[0]
    assert down[2, 1] == up[0, 1] == right[1, 2] == left[1, 0] == 255
    for moved in (down, up, right, left):
        assert moved.sum() == 255  # the one lit pixel, nowhere else


def test_nothing_wraps_around_at_the_edges():
    images = np.full((2, 4, 4, 3), 7, np.uint8)
    out = shift_images(images, -1, 2)
    assert (out[:, 3] == 0).all() and (out[:, :, :2] == 0).all()  # the filled-in borders
    assert (out[:, :3, 2:] == 7).all()
    assert not shift_images(images, 4, 0).any() and not shift_images(images, 0, -9).any()


def test_shifted_copies_are_one_per_shift_in_order_and_leave_the_input_alone():
    images = _numbered((2, 6, 5, 1)).astype(np.float32)
    before = images.copy()
    copies = shifted_copies(images, [(0, 0), (1, -1), (0, 2)])
    assert len(copies) == 3
    np.testing.assert_array_equal(copies[0], images)
    assert copies[0] is not images
    np.testing.assert_array_equal(copies[1], shift_images(images, 1, -1))
    np.testing.assert_array_equal(copies[2], shift_images(images, 0, 2))
    np.testing.assert_array_equal(images, before)


def test_the_default_set_is_the_original_and_its_four_one_pixel_neighbours():
    assert DEFAULT_SHIFTS[0] == (0, 0)
    assert sorted(DEFAULT_SHIFTS[1:]) == [(-1, 0), (0, -1), (0, 1), (1, 0)]
    assert len(shifted_copies(np.zeros((1, 28, 28), np.uint8))) == 5


@pytest.mark.parametrize("bad", [np.zeros((28, 28)), np.zeros((1, 2, 3, 4, 5)), np.zeros(3)])
def test_shapes_that_are_not_batches_are_refused(bad):
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
        shift_images(bad, 1, 0)
    with pytest.raises(ValueError):
        tta_probabilities(lambda b: b, bad)


def test_no_shifts_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        shifted_copies(np.zeros((1, 2, 2)), [])
    with pytest.raises(ValueError, match="at least one"):
        tta_probabilities(lambda b: b, np.zeros((1, 2, 2)), [])


# --- averaging ----------------------------------------------------------------------------------

def test_average_probabilities_is_the_elementwise_mean():
    rng = np.random.default_rng(0)
    arrays = [rng.dirichlet(np.ones(4), size=6) for _ in range(3)]
    mean = average_probabilities(arrays)
    assert mean.dtype == np.float64 and mean.shape == (6, 4)
    np.testing.assert_allclose(mean, (arrays[0] + arrays[1] + arrays[2]) / 3, rtol=1e-12)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(average_probabilities([arrays[1]]), arrays[1])
    # float32 members and plain lists are accepted and averaged in float64.
    assert average_probabilities([[[0.25, 0.75]], np.float32([[0.75, 0.25]])]).tolist() == [
        [0.5, 0.5]]


def test_averaging_two_disagreeing_models_can_change_the_answer():
    sure_a = np.array([[0.9, 0.1, 0.0]])
    split = np.array([[0.0, 0.5, 0.5]])
    assert average_probabilities([sure_a, split]).argmax(axis=1).tolist() == [0]
    assert average_probabilities([split, [[0.0, 0.2, 0.8]]]).argmax(axis=1).tolist() == [2]


@pytest.mark.parametrize("shapes", [[(4, 10), (4, 5)], [(4, 10), (4, 10), (3, 10)]])
def test_unequal_shapes_are_one_clear_tfcnn_error(shapes):
    with pytest.raises(ModelSpecError) as caught:
        average_probabilities([np.full(shape, 0.1) for shape in shapes])
    message = str(caught.value)
    assert isinstance(caught.value, TfcnnError) and "\n" not in message
    assert f"shape {shapes[-1]} (number {len(shapes)})" in message
    assert f"shape {shapes[0]} (number 1)" in message


def test_averaging_nothing_is_an_error():
    with pytest.raises(ModelSpecError, match="at least one model"):
        average_probabilities([])


# --- TTA with stand-in models -------------------------------------------------------------------

def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_tta_of_a_shift_invariant_model_changes_nothing():
    # Total ink decides the class: every shift that keeps the ink gives the same answer.
    images = np.zeros((3, 8, 8), np.float32)
    for i, ink in enumerate((1.0, 2.0, 3.0)):
        images[i, 3:5, 3:5] = ink

    def by_total_ink(batch: np.ndarray) -> np.ndarray:
        total = batch.reshape(len(batch), -1).sum(axis=1)
        return _softmax(np.stack([-total, total - 8, 8 - abs(total - 8)], axis=1))

    np.testing.assert_allclose(tta_probabilities(by_total_ink, images), by_total_ink(images),
                               rtol=1e-12)


def test_tta_averages_over_exactly_the_shifted_copies():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 7, 6, 3)).astype(np.uint8)
    weights = rng.normal(size=(7 * 6 * 3, 4))
    calls = []

    def linear(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.copy())
        return _softmax(batch.reshape(len(batch), -1).astype(np.float64) / 255 @ weights)

    shifts = [(0, 0), (1, 1), (-2, 0)]
    probs = tta_probabilities(linear, images, shifts)
    expected = np.mean([linear(shift_images(images, dy, dx)) for dy, dx in shifts], axis=0)
    calls = calls[:len(shifts)]  # those made by tta_probabilities itself
    for call, (dy, dx) in zip(calls, shifts, strict=True):
        np.testing.assert_array_equal(call, shift_images(images, dy, dx))
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    assert probs.shape == (5, 4)
    # A model that depends on position does see the shifts: TTA differs from one view.
    assert not np.allclose(probs, linear(images))


def test_tta_with_a_model_giving_another_shape_per_copy_is_refused():
    sizes = iter([10, 10, 9, 10, 10])
    with pytest.raises(ModelSpecError, match="number 3"):
        tta_probabilities(lambda b: np.full((len(b), next(sizes)), 0.1), np.zeros((2, 4, 4)))


@pytest.mark.slow
def test_importing_tta_does_not_import_tensorflow():
    code = ("import sys, tfcnn.models.tta\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_mirror_adds_the_mirrored_view_of_every_shift():
    images = np.zeros((1, 4, 4), np.uint8)
    images[0, 1, 0] = 255  # a dot on the left edge
    seen: list[np.ndarray] = []

    def record(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return np.tile([[1.0, 0.0]], (len(batch), 1))

    tta_probabilities(record, images, shifts=((0, 0), (0, 1)), mirror=True)
    assert len(seen) == 4
    assert seen[0][0, 1, 0] == 255 and seen[1][0, 1, 1] == 255  # plain views, shifted right
    assert seen[2][0, 1, 3] == 255 and seen[3][0, 1, 3] == 0  # mirrored, then shifted off
    assert np.array_equal(mirror_images(images)[0], images[0][:, ::-1])


def test_mirrored_views_change_the_average_for_an_asymmetric_model():
    images = np.zeros((2, 4, 4), np.uint8)
    images[:, :, :2] = 255  # ink on the left half

    def left_detector(batch: np.ndarray) -> np.ndarray:
        left = batch[:, :, :2].mean(axis=(1, 2)) > batch[:, :, 2:].mean(axis=(1, 2))
        return np.stack([left, ~left], axis=1).astype(float)

    plain = tta_probabilities(left_detector, images, shifts=((0, 0),))
    both = tta_probabilities(left_detector, images, shifts=((0, 0),), mirror=True)
    assert plain[:, 0].tolist() == [1.0, 1.0]
    assert both[:, 0].tolist() == [0.5, 0.5]
