"""Stratified, seeded splits: proportions per class, disjoint, complete, repeatable."""

import numpy as np
import pytest

from tfcnn.data.split import held_out_count, stratified_split


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(10, size=5000, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())


def test_each_class_holds_out_its_own_fraction(labels):
    kept, held = stratified_split(labels, 0.1, seed=3)
    for c in range(10):
        n = int((labels == c).sum())
        assert int((labels[held] == c).sum()) == held_out_count(n, 0.1)
        assert abs((labels[held] == c).sum() / n - 0.1) < 0.01


def test_parts_are_disjoint_and_cover_everything_once(labels):
    kept, held = stratified_split(labels, 0.25, seed=1)
    assert len(np.intersect1d(kept, held)) == 0
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))


def test_same_seed_same_split_other_seed_other_split(labels):
    a = stratified_split(labels, 0.2, seed=5)
    b = stratified_split(labels, 0.2, seed=5)
    c = stratified_split(labels, 0.2, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.sort(a[1]), np.sort(c[1]))


def test_order_is_shuffled_not_grouped_by_class(labels):
    kept, _ = stratified_split(labels, 0.1, seed=2)
    assert not np.all(np.diff(labels[kept]) >= 0)


@pytest.mark.parametrize(("n", "fraction", "expected"),
                         [(0, 0.1, 0), (1, 0.5, 0), (2, 0.01, 1), (25, 0.1, 3), (10, 0.99, 9),
                          (100, 0, 0)])
def test_held_out_count_rounds_half_up_and_keeps_one_of_each(n, fraction, expected):
    assert held_out_count(n, fraction) == expected
