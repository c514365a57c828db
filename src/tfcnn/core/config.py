"""`TrainConfig`: every training setting in one dataclass, its defaults the tutorial's.

One config travels explicitly from the CLI to the training loop and into the run
directory's `config.json`, from which `--resume` reads it back. Each field is declared once,
with its rules, help text and CLI group (core/settings.py): construction validates it, and
`tfcnn train` makes its flag from it (`cli_parser.add_train_flags`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tfcnn.core.errors import ConfigError
from tfcnn.core.settings import (
    Setting,
    SettingError,
    choice,
    duration,
    fraction,
    integer,
    normalise,
    number,
    settings_of,
    switch,
    text,
    validate,
)

SCHEDULES = ("constant", "onecycle", "cosine")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_bfloat16")
# "stream": decoded from the files every epoch, nothing kept; "none" is its old name
# (config.json files and scripts from before), read as "stream".
CACHES = ("memory", "disk", "stream", "none")


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run; each field's help text says what it does."""

    preset: str | None = text(None, "a measured recipe whose settings fill in the flags not "
                              "given: tutorial (the defaults), fast, best or photo",
                              group="recipe")
    dataset: str = text("mnist", "mnist, fashion_mnist, or folder:PATH (one sub-folder of "
                        "images per class) (default {default})", group="data")
    data_dir: str | None = text(None, "folder with mnist/ and fashion_mnist/ (or the four IDX "
                                "files); default: $TFCNN_DATA_DIR, then caches, then download",
                                group="data", metavar="DIR")
    model: str = text("tutorial", "preset name or layer notation such as '32C3-P2-D128-D10' "
                      "(default {default})", group="model")
    epochs: int = integer(5, "passes over the training set (default {default})",
                          group="training")
    batch_size: int = integer(32, "images per training step (default {default})",
                              group="training")
    # Keras's default Adam learning rate, as the tutorial.
    lr: float = number(0.001, "Adam (peak) learning rate (default {default})", above=0,
                       group="training")
    schedule: str = choice("constant", SCHEDULES, "learning rate schedule: constant; onecycle "
                           "(linear warm-up to --lr, then cosine decay to 0); cosine (from --lr "
                           "to 0) (default {default})", group="training")
    warmup: float = fraction(0.2, "onecycle: fraction of the steps spent warming up "
                             "(default {default})", group="training")
    weight_decay: float = number(0.0, "AdamW's decoupled weight decay, times the lr "
                                 "(default 0: plain Adam)", minimum=0, group="training",
                                 metavar="W")
    label_smoothing: float = fraction(0.0, "label smoothing of the training loss; the "
                                      "reported test loss is plain (default 0)",
                                      group="training")
    ema: float = fraction(0.0, "keep an exponential moving average of the weights with "
                          "momentum M (e.g. 0.999): epochs are evaluated, and model.keras "
                          "saved, with it (default 0: none)", group="training", metavar="M",
                          expected="a momentum from 0 to below 1")
    # In-graph augmentation of each training batch (data/augment.py); 0 / False: none.
    shift: float = number(0.0, "random shifts of up to PX pixels in each axis (default 0)",
                          minimum=0, group="augmentation", metavar="PX")
    rotate: float = number(0.0, "random rotations of up to DEG degrees either way "
                           "(default 0)", minimum=0, group="augmentation", metavar="DEG")
    zoom: float = fraction(0.0, "random zoom between 1-F and 1+F (default 0)",
                           group="augmentation")
    hflip: bool = switch(False, "random left-right mirroring (for clothes, not digits)",
                         group="augmentation")
    erase: float = number(0.0, "random erasing: blank one random rectangle (2-25% of the "
                          "image) with probability P (default 0)", minimum=0, maximum=1,
                          group="augmentation", metavar="P",
                          expected="a probability from 0 to 1")
    elastic: float = number(0.0, "elastic distortion (Simard et al. 2003): a smooth random "
                            "field scaled by ALPHA pixels moves each pixel, as handwriting "
                            "varies (default 0; 34 is Simard's)", minimum=0,
                            group="augmentation", metavar="ALPHA")
    elastic_sigma: float = number(4.0, "smoothness of the elastic field in pixels "
                                  "(default {default})", above=0, group="augmentation",
                                  metavar="PX", expected="a number > 0")
    # Planned from the run's own measured speed (training/budget.py).
    time_budget: float | None = duration(None, "train for about this long (90s, 15m, 1h), "
                                         "final test and calibration included: the epochs "
                                         "and the learning-rate schedule are planned from "
                                         "the speed measured on the first steps; --epochs "
                                         "becomes the most to train (default: no budget)",
                                         group="training")
    early_stop: int | None = integer(None, "with a validation split: stop when the "
                                     "validation loss has not improved for N epochs; the "
                                     "best epoch is kept (default: off)", group="training",
                                     metavar="N")
    seed: int | None = integer(None, "random seed; the same seed gives the same run (default: "
                               "a random one, recorded in config.json)", minimum=0,
                               group="training", expected="a non-negative integer")
    shuffle_buffer: int | None = integer(None, "shuffle buffer in images (default: a quarter "
                                         "of the training set)", group="training",
                                         metavar="N")
    # Any size gives the same metrics.
    eval_batch_size: int = integer(1000, "images per test step (default {default})",
                                   group="speed", metavar="N")
    steps_per_call: int = integer(50, "training steps per compiled call; only speed changes "
                                  "(default {default})", group="speed", metavar="N")
    precision: str = choice("float32", PRECISIONS, "float32, or mixed_bfloat16: bfloat16 "
                            "arithmetic with float32 weights, faster on CPUs with "
                            "AVX512-BF16/AMX (default {default})", group="speed")
    strategy: str = choice("auto", STRATEGIES, "tf.distribute strategy: default (one device), "
                           "mirrored (local GPUs), multi-worker (TF_CONFIG), auto (picks one) "
                           "(default {default})", group="speed")
    out: str | None = text(None, "run directory (default "
                           "runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>)", group="output",
                           metavar="DIR")
    limit_train: int | None = integer(None, "use only the first N training images (quick "
                                      "checks)", group="data", metavar="N")
    limit_test: int | None = integer(None, "use only the first N test images", group="data",
                                     metavar="N")
    image_size: str | None = text(None, "resize every image to N x N or H x W (default 28)",
                                  group="folders", metavar="N|HxW",
                                  expected='N or HxW as a string, e.g. "28" or "32x48"')
    grayscale: bool = switch(True, "one channel (default) or three", group="folders",
                             switches=(("--grayscale", True, "one channel (default)"),
                                       ("--rgb", False, "three colour channels")))
    # None: memory when the decoded images fit in data.folders.MEMORY_BYTES (256 MiB).
    cache: str | None = choice(None, CACHES, "where decoded images are kept: memory (decoded "
                               "before training), disk (streamed from the files, decoded once "
                               "into RUN/cache/), stream (decoded from the files every "
                               "epoch; 'none' is its old name) (default: memory when they "
                               "fit in 256 MiB, else stream)",
                               group="folders")
    val_split: float | None = fraction(None, "hold out this fraction of the training images "
                                       "(stratified, seeded) for validation; epochs report "
                                       "validation metrics, the best epoch is kept, the test "
                                       "set is used once at the end (default: none)",
                                       group="data")
    # Image folders without train/ and test/ (or val/) sub-folders only.
    test_split: float | None = fraction(None, "image folders without train/ and test/ "
                                        "sub-folders: the fraction of each class held out as "
                                        "the test set (default 0.1)", group="data")
    # Transfer learning: with pretrained weights the backbone trains frozen for
    # `freeze_epochs`, then fine-tuned (its last `fine_tune_layers` weighted layers, or all).
    weights: str = text("none", "the backbone's weights: imagenet (Keras's cache, "
                        "~/.keras/models), none (random; the whole network trains) or a "
                        "weights file (default {default})", group="transfer",
                        metavar="imagenet|none|PATH", allow_empty=False,
                        expected="imagenet, none or a file's path")
    freeze_epochs: int = integer(0, "with pretrained weights: train only the new head for the "
                                 "first N epochs, then fine-tune the backbone (default 0)",
                                 minimum=0, group="transfer", metavar="N")
    fine_tune_lr: float | None = number(None, "learning rate once the backbone is unfrozen "
                                        "(default --lr / 10)", above=0, group="transfer",
                                        metavar="LR")
    fine_tune_layers: int | None = integer(None, "fine-tune only the backbone's last N layers "
                                           "with weights (default: all; batch norms stay "
                                           "frozen)", minimum=0, group="transfer", metavar="N")
    # Photo augmentation (data/photo_augment.py), after the affine one; 0: off.
    crop_area: float = fraction(0.0, "photos: random resized crop keeping F to all of the "
                                "image's area, aspect 3:4 to 4:3, resized back (default 0: "
                                "off; e.g. 0.35)", group="augmentation",
                                expected="a fraction from 0 (off) to below 1")
    brightness: float = number(0.0, "photos: random brightness change of up to F (0-1), "
                               "added (default 0)", minimum=0, maximum=1,
                               group="augmentation", metavar="F")
    contrast: float = number(0.0, "photos: random contrast factor from 1-F to 1+F "
                             "(default 0)", minimum=0, maximum=1, group="augmentation",
                             metavar="F")
    saturation: float = number(0.0, "photos: random saturation factor from 1-F to 1+F "
                               "(default 0)", minimum=0, maximum=1, group="augmentation",
                               metavar="F")
    hue: float = number(0.0, "photos: random hue rotation of up to TURNS (0-0.5) either way "
                        "(default 0)", minimum=0, maximum=0.5, group="augmentation",
                        metavar="TURNS", expected="turns from 0 to 0.5")
    mixup: float = number(0.0, "mixup: blend pairs of images and their labels, weights from "
                          "Beta(A, A) (default 0: off; e.g. 0.2)", minimum=0,
                          group="augmentation", metavar="A",
                          expected="a Beta parameter >= 0 (0: off)")
    cutmix: float = number(0.0, "cutmix: paste a box of another image, its share from "
                           "Beta(A, A) (default 0: off; e.g. 1.0); with --mixup, a coin "
                           "picks one", minimum=0, group="augmentation", metavar="A",
                           expected="a Beta parameter >= 0 (0: off)")
    class_weight: str | None = choice(None, ("balanced",), "balanced: weight each class's "
                                      "loss by n / (classes * its count) in the training "
                                      "images (imbalanced folders)", group="training")

    def __post_init__(self) -> None:
        normalise(self, SETTINGS)
        validate(self, SETTINGS)
        if self.cache == "none":  # the old name of "stream": one meaning per name
            object.__setattr__(self, "cache", "stream")
        for check in CROSS_CHECKS:
            check(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict such as config.json's; unknown keys are an error."""
        if str(data.get("dataset", "")).startswith("folder:") and "test_split" not in data:
            # Saved before test_split existed, when a folder's val_split was its test split.
            data = {**data, "test_split": data.get("val_split"), "val_split": None}
        unknown = sorted(set(data) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except SettingError as exc:  # the file's key, not a flag, is what to fix
            raise ConfigError(f"{source}: {exc}") from None


def _weights_need_a_backbone(config: TrainConfig) -> None:
    """Pretrained weights belong to a keras.applications backbone, not a notation model."""
    if config.weights.lower() != "none" and not config.model.lower().startswith("keras:"):
        raise SettingError("weights", f"{{setting}}: expected none for model {config.model!r} "
                           f"(imagenet or a file only for keras:NAME models), "
                           f"got {config.weights!r}")


def _early_stop_needs_validation(config: TrainConfig) -> None:
    """Patience is counted on the validation loss: no validation split, nothing to count."""
    if config.early_stop and not config.val_split:
        raise SettingError("early_stop", "{setting}: needs a validation split to watch "
                                         "(--val-split F or val_split=F, e.g. 0.1)")


# Checks between settings, run after each setting passed its own.
CROSS_CHECKS = (_weights_need_a_backbone, _early_stop_needs_validation)

# Every field's Setting (a field declared without one fails here, at import).
SETTINGS: dict[str, Setting] = settings_of(TrainConfig)
