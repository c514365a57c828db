"""tf.data pipelines: scaling, batching, seeded shuffling, resuming mid-epoch."""

import numpy as np

from tfcnn.data import pipeline


def arrays(n: int = 100):
    images = (np.arange(n * 28 * 28) % 256).astype(np.uint8).reshape(n, 28, 28)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def epoch_labels(ds) -> list[int]:
    return [int(v) for _, labels in ds for v in labels.numpy()]


def test_images_are_scaled_to_unit_range_with_a_channel_axis():
    images, labels = arrays(10)
    batch_images, batch_labels = next(iter(pipeline.eval_batches(
        pipeline.array_dataset(images, labels), 4)))
    assert batch_images.shape == (4, 28, 28, 1) and batch_images.dtype.name == "float32"
    np.testing.assert_allclose(batch_images.numpy()[..., 0], images[:4] / 255.0, rtol=1e-6)
    assert batch_labels.dtype.name == "int32"


def test_train_batches_cover_every_image_once_in_batches_of_the_size():
    images, labels = arrays(100)
    ds = pipeline.train_batches(pipeline.train_examples(images, np.arange(100)), 32, 25, 1, 1)
    sizes = [int(b.shape[0]) for b, _ in ds]
    assert sizes == [32, 32, 32, 4]
    assert sorted(epoch_labels(ds)) == list(range(100))


def test_order_depends_only_on_seed_and_epoch():
    images, _ = arrays(200)
    pairs = pipeline.train_examples(images, np.arange(200))
    order = {key: epoch_labels(pipeline.train_batches(pairs, 16, 50, *key)) for key in
             [(1, 1), (1, 2), (2, 1)]}
    assert epoch_labels(pipeline.train_batches(pairs, 16, 50, 1, 1)) == order[(1, 1)]
    assert order[(1, 1)] != order[(1, 2)] and order[(1, 1)] != order[(2, 1)]
    assert order[(1, 1)] != list(range(200))


def test_skipping_batches_resumes_the_same_order():
    images, _ = arrays(200)
    pairs = pipeline.train_examples(images, np.arange(200))
    full = epoch_labels(pipeline.train_batches(pairs, 16, 50, 3, 4))
    assert epoch_labels(pipeline.train_batches(pairs, 16, 50, 3, 4, skip_batches=5)) == full[80:]


def test_default_shuffle_buffer_is_a_quarter_of_the_training_set():
    assert pipeline.default_shuffle_buffer(60_000) == 15_000
    assert pipeline.default_shuffle_buffer(2) == 1


def test_pipelines_run_without_the_autotuner():
    # With AUTOTUNE, training epochs stalled until the autotuner next ran (see pipeline.py).
    images, labels = arrays(10)
    for ds in (pipeline.train_batches(pipeline.train_examples(images, labels), 4, 10, 1, 1),
               pipeline.eval_batches(pipeline.array_dataset(images, labels), 4)):
        assert ds.options().autotune.enabled is False
        assert sum(int(b.shape[0]) for b, _ in ds) == 10
