"""The compiled training and test steps: tf.GradientTape steps under tf.function.

The model returns logits and the loss is built `from_logits=True` (no double softmax);
model, optimizer and metrics are passed in and closed over, never module globals; the loss
metric averages over images, so the last, smaller batch is weighted fairly. Under a
tf.distribute strategy the same steps run on every replica (strategy.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from tfcnn.data.augment import Augmentation, augment_images, step_seed
from tfcnn.data.photo_augment import PhotoAugmentation, mix_batch, photo_augment
from tfcnn.training.strategy import global_mean, replicated_steps


@dataclass
class Steps:
    train: Callable[[Any, tf.Tensor], None]  # (iterator over batches, number of steps)
    test: Callable[[tf.Tensor, tf.Tensor], None]
    train_metrics: list[keras.metrics.Metric]
    test_metrics: list[keras.metrics.Metric]
    optimizer: keras.optimizers.Optimizer | None = None  # for its weight average, if any


def augment_batch(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation | None,
                  photo: PhotoAugmentation | None) -> tf.Tensor:
    """A float batch as the training step warps it, before any mixing: the affine/elastic
    /erasing augmentation, then the photo crop, flip and colour jitter, all drawn from
    `seed` (`step_seed`); `tfcnn show` calls this very function."""
    if augmentation is not None and augmentation.active:
        images = augment_images(images, augmentation, seed)
    if photo is not None and photo.active:
        images = photo_augment(images, seed, photo)
    return images


def make_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer,
               image_shape: tuple[int, ...], strategy: Any = None, *, seed: int = 0,
               augmentation: Augmentation | None = None,
               label_smoothing: float = 0.0, photo: PhotoAugmentation | None = None,
               class_weights: Sequence[float] | None = None) -> Steps:
    """Compiled train and test steps closing over the model, optimizer and metrics.

    With a `strategy`, call this in its scope (the metrics' variables are created here).
    `augmentation` warps each training batch in the graph, seeded by (seed, step count);
    `label_smoothing` applies to the training loss only (test losses stay plain).
    `photo` crops, flips and colour-jitters after `augmentation` (same seed) and may mix
    pairs of images (mixup/cutmix: the loss is w * CE(labels) + (1 - w) * CE(partners));
    `class_weights` (one per class) scale each image's training loss by its label's weight.
    """
    per_image_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    smoothed_loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def training_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        if not label_smoothing:
            return per_image_loss(labels, logits)
        return smoothed_loss(tf.one_hot(labels, tf.shape(logits)[-1]), logits)

    weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def weighted_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        losses = training_loss(labels, logits)
        return losses if weights is None else losses * tf.gather(weights, labels)

    def seed_now() -> tf.Tensor:
        replica = (tf.distribute.get_replica_context().replica_id_in_sync_group
                   if strategy is not None else 0)
        return step_seed(seed, optimizer.iterations, replica)

    def augmented(images: tf.Tensor) -> tf.Tensor:
        if not any(a is not None and a.active for a in (augmentation, photo)):
            return images
        return augment_batch(images, seed_now(), augmentation, photo)

    def mixed(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, Any]:
        """The batch to train on and its per-image loss function of the logits."""
        if photo is None or not photo.mixing:
            return images, lambda logits: weighted_loss(labels, logits)
        images, partners, own = mix_batch(images, labels, seed_now(), photo)
        return images, lambda logits: (own * weighted_loss(labels, logits)
                                       + (1 - own) * weighted_loss(partners, logits))

    train_loss = keras.metrics.Mean("loss")
    train_accuracy = keras.metrics.SparseCategoricalAccuracy("accuracy")
    test_loss = keras.metrics.Mean("test_loss")
    test_accuracy = keras.metrics.SparseCategoricalAccuracy("test_accuracy")
    # A fixed signature: the last, smaller batch must not trigger a second trace.
    signature = (tf.TensorSpec((None, *image_shape), tf.float32), tf.TensorSpec((None,), tf.int32))

    def train_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        images, loss_of = mixed(augmented(images), labels)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = loss_of(logits)
            loss = tf.reduce_mean(losses) if strategy is None else global_mean(losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        train_loss.update_state(losses)
        train_accuracy.update_state(labels, logits)

    def test_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        logits = model(images, training=False)
        test_loss.update_state(per_image_loss(labels, logits))
        test_accuracy.update_state(labels, logits)

    metrics = ([train_loss, train_accuracy], [test_loss, test_accuracy])
    if strategy is not None:
        statistics = [v for v in model.non_trainable_variables
                      if keras.backend.is_float_dtype(v.dtype)]
        return Steps(*replicated_steps(strategy, train_step, test_step, statistics), *metrics,
                     optimizer)

    # Several steps per call (like Keras's steps_per_execution): the same updates in the same
    # order, without a Python round trip and function-call overhead between steps.
    @tf.function
    def train_steps(batches: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            images, labels = next(batches)
            train_step(images, labels)

    return Steps(train_steps, tf.function(test_step, input_signature=signature), *metrics,
                 optimizer)
