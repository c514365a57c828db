"""The optimizer and the augmentations a `TrainConfig` asks for: Adam or AdamW with a
constant, one-cycle or cosine learning rate, and the affine and photo augmentations."""

from __future__ import annotations

from typing import Any

import keras

from tfcnn.core.config import TrainConfig
from tfcnn.core.presets import adam_betas
from tfcnn.data.augment import Augmentation
from tfcnn.data.photo_augment import PhotoAugmentation


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | Any:
    """Adam's learning rate: a constant, or a one-cycle or cosine schedule over the whole run.

    One-cycle here: linear warm-up from lr/25 to lr over `warmup` of the steps, then cosine
    decay to 0 (the shape of PyTorch's OneCycleLR with its default div_factor of 25).
    Cosine: from lr straight down to 0. The schedules read the optimizer's step count, which
    checkpoints keep, so a resumed run continues on the same curve (if --epochs is not changed).
    """
    if config.schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=max(1, total))
    warmup = int(config.warmup * total)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.lr / 25, decay_steps=max(1, total - warmup),
        warmup_target=config.lr, warmup_steps=warmup)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (the tutorial's), or AdamW when a weight decay is set (decay not applied to BN).

    With `config.ema` the optimizer also keeps a moving average of the weights (averaging.py).
    """
    rate = learning_rate(config, steps_per_epoch)
    beta_1, beta_2 = adam_betas(config)
    settings = {"beta_1": beta_1, "beta_2": beta_2}
    if config.ema:
        settings.update(use_ema=True, ema_momentum=config.ema)
    if not config.weight_decay:
        return keras.optimizers.Adam(learning_rate=rate, **settings)
    optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.weight_decay,
                                       **settings)
    # Decaying batch-norm scales and shifts and biases only fights the normalisation.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def augmentation_of(config: TrainConfig) -> Augmentation:
    """The affine/elastic/erasing augmentation; the flip goes to the crop when there is one
    (photo_augmentation_of), so a photo is resampled once for both."""
    return Augmentation(shift=config.shift, rotate=config.rotate, zoom=config.zoom,
                        hflip=config.hflip and not config.crop_area, erase=config.erase,
                        elastic=config.elastic, elastic_sigma=config.elastic_sigma)


def photo_augmentation_of(config: TrainConfig) -> PhotoAugmentation:
    """Crop (with the flip), colour jitter and mixing (data/photo_augment.py)."""
    return PhotoAugmentation(crop_area=config.crop_area,
                             hflip=config.hflip and config.crop_area > 0,
                             brightness=config.brightness, contrast=config.contrast,
                             saturation=config.saturation, hue=config.hue, mixup=config.mixup,
                             cutmix=config.cutmix)
