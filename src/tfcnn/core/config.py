"""`TrainConfig`: every training setting in one dataclass, its defaults the tutorial's.

One config travels explicitly from the CLI to the training loop and into the run
directory's `config.json`, from which `--resume` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tfcnn.core.errors import ConfigError

SCHEDULES = ("constant", "onecycle", "cosine")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_bfloat16")
CACHES = ("memory", "disk", "none")


@dataclass(frozen=True)
class TrainConfig:
    preset: str | None = None         # the recipe these settings started from (presets.py)
    dataset: str = "mnist"
    data_dir: str | None = None       # None: search TFCNN_DATA_DIR, caches, then download
    model: str = "tutorial"           # preset name or layer notation
    epochs: int = 5
    batch_size: int = 32              # images per training step
    lr: float = 0.001                 # Adam's (peak) learning rate (Keras default, as the tutorial)
    schedule: str = "constant"        # "constant"; "onecycle": warm up to lr, cosine to 0;
                                      # "cosine": cosine from lr to 0
    warmup: float = 0.2               # onecycle: fraction of all steps spent warming up
    weight_decay: float = 0.0         # > 0: AdamW with this decoupled decay (times the lr)
    label_smoothing: float = 0.0      # training loss only; the reported test loss is plain
    ema: float = 0.0                  # > 0: evaluate and keep an exponential moving average
                                      # of the weights with this momentum (e.g. 0.999)
    # In-graph augmentation of each training batch (data/augment.py); 0 / False: none.
    shift: float = 0.0                # pixels, either way, each axis
    rotate: float = 0.0               # degrees, either way
    zoom: float = 0.0                 # relative: 0.1 zooms 90% to 110%
    hflip: bool = False               # random left-right mirror (clothes, not digits)
    erase: float = 0.0                # probability of random erasing (one blank rectangle)
    elastic: float = 0.0              # elastic distortion's scale alpha, pixels (Simard: 34)
    elastic_sigma: float = 4.0        # smoothness of the elastic field, pixels (Simard: 4)
    seed: int | None = None           # None: a random seed is drawn and recorded in config.json
    shuffle_buffer: int | None = None  # images; None: a quarter of the training set (tutorial)
    eval_batch_size: int = 1000       # images per test step: any size gives the same metrics
    steps_per_call: int = 50          # training steps per tf.function call; same maths as 1
    precision: str = "float32"        # or "mixed_bfloat16": bf16 compute, float32 weights
    strategy: str = "auto"            # tf.distribute: auto, default, mirrored, multi-worker
    out: str | None = None            # run directory; None: runs/<dataset>-<model>-<time>
    limit_train: int | None = None    # use only the first N training images (quick checks)
    limit_test: int | None = None     # use only the first N test images
    # Image-folder datasets only (--dataset folder:PATH):
    image_size: str | None = None     # "28" or "HxW"; None: 28x28
    grayscale: bool = True            # False: RGB
    # Where decoded images are kept: "memory" (decoded once, before training), "disk" (streamed
    # from the files, decoded once into RUN/cache/), "none" (streamed, decoded every epoch).
    # None: memory when the decoded images fit in data.folders.MEMORY_BYTES (256 MiB), else none.
    cache: str | None = None
    # A validation split of the training images (any dataset): epochs then report
    # validation metrics, the best epoch by validation is kept, and the test set is used
    # once, for the final report. None: no validation.
    val_split: float | None = None
    # Image folders without train/ and test/ (or val/) sub-folders: the fraction of each
    # class held out as the test set. None: 0.1.
    test_split: float | None = None
    # Transfer learning (--model keras:NAME only): the backbone's weights, "imagenet" (Keras's
    # cache), "none" (seeded random) or a file's path; with pretrained weights the backbone is
    # frozen for `freeze_epochs` epochs (the head trains alone), then fine-tuned (its last
    # `fine_tune_layers` weighted layers, or all) at `fine_tune_lr` (None: lr / 10).
    weights: str = "none"
    freeze_epochs: int = 0
    fine_tune_lr: float | None = None
    fine_tune_layers: int | None = None
    # Photo augmentation (data/photo_augment.py), after the affine one; 0: off.
    crop_area: float = 0.0            # random resized crop keeping this share of the area to all
    brightness: float = 0.0           # largest brightness change, added (0.2: +-0.2)
    contrast: float = 0.0             # contrast factor from 1 - this to 1 + this
    saturation: float = 0.0           # saturation factor from 1 - this to 1 + this
    hue: float = 0.0                  # largest hue rotation, in turns
    mixup: float = 0.0                # mixup's Beta(a, a) parameter (0: off)
    cutmix: float = 0.0               # cutmix's Beta(a, a) parameter (0: off)
    class_weight: str | None = None   # "balanced": loss weights n / (classes * count_c)

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "eval_batch_size": self.eval_batch_size,
                    "steps_per_call": self.steps_per_call}
        for field, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{field}: expected a positive integer, got {value!r}")
        for field in ("limit_train", "limit_test", "shuffle_buffer"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ConfigError(f"{field}: expected a positive integer, got {value!r}")
        for field in ("val_split", "test_split"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int | float)
                                      or isinstance(value, bool) or not 0 <= value < 1):
                raise ConfigError(f"{field}: expected a fraction from 0 to below 1, "
                                  f"got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: expected one of {', '.join(SCHEDULES)}, "
                              f"got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: expected one of {', '.join(STRATEGIES)}, "
                              f"got {self.strategy!r}")
        if not isinstance(self.warmup, int | float) or not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup: expected a fraction from 0 to below 1, got {self.warmup!r}")
        for field in ("weight_decay", "shift", "rotate", "zoom", "elastic"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{field}: expected a number >= 0, got {value!r}")
        if not isinstance(self.label_smoothing, int | float) or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing: expected a fraction from 0 to below 1, "
                              f"got {self.label_smoothing!r}")
        if (not isinstance(self.ema, int | float) or isinstance(self.ema, bool)
                or not 0 <= self.ema < 1):
            raise ConfigError(f"ema: expected a momentum from 0 to below 1, got {self.ema!r}")
        if not isinstance(self.erase, int | float) or not 0 <= self.erase <= 1:
            raise ConfigError(f"erase: expected a probability from 0 to 1, got {self.erase!r}")
        if (not isinstance(self.elastic_sigma, int | float) or isinstance(self.elastic_sigma, bool)
                or not self.elastic_sigma > 0):
            raise ConfigError(f"elastic_sigma: expected a number > 0, got {self.elastic_sigma!r}")
        if self.zoom >= 1:
            raise ConfigError(f"zoom: expected a fraction below 1, got {self.zoom!r}")
        if not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ConfigError(f"lr: expected a positive number, got {self.lr!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ConfigError(f"seed: expected a non-negative integer, got {self.seed!r}")
        self._check_photo_settings()

    def _check_photo_settings(self) -> None:
        """Transfer-learning, photo-augmentation and class-weight settings."""
        if not isinstance(self.weights, str) or not self.weights:
            raise ConfigError(f"weights: expected imagenet, none or a file's path, "
                              f"got {self.weights!r}")
        if self.weights.lower() != "none" and not self.model.lower().startswith("keras:"):
            raise ConfigError(f"weights: expected none for model {self.model!r} (imagenet or "
                              f"a file only for keras:NAME models), got {self.weights!r}")
        if (not isinstance(self.freeze_epochs, int) or isinstance(self.freeze_epochs, bool)
                or self.freeze_epochs < 0):
            raise ConfigError(f"freeze_epochs: expected an integer >= 0, "
                              f"got {self.freeze_epochs!r}")
        if self.fine_tune_layers is not None and (
                not isinstance(self.fine_tune_layers, int)
                or isinstance(self.fine_tune_layers, bool) or self.fine_tune_layers < 0):
            raise ConfigError(f"fine_tune_layers: expected an integer >= 0, "
                              f"got {self.fine_tune_layers!r}")
        if self.fine_tune_lr is not None and (
                not isinstance(self.fine_tune_lr, int | float)
                or isinstance(self.fine_tune_lr, bool) or not self.fine_tune_lr > 0):
            raise ConfigError(f"fine_tune_lr: expected a positive number, "
                              f"got {self.fine_tune_lr!r}")
        if (not isinstance(self.crop_area, int | float) or isinstance(self.crop_area, bool)
                or not 0 <= self.crop_area < 1):
            raise ConfigError(f"crop_area: expected a fraction from 0 (off) to below 1, "
                              f"got {self.crop_area!r}")
        for field in ("brightness", "contrast", "saturation"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ConfigError(f"{field}: expected a number from 0 to 1, got {value!r}")
        if (not isinstance(self.hue, int | float) or isinstance(self.hue, bool)
                or not 0 <= self.hue <= 0.5):
            raise ConfigError(f"hue: expected turns from 0 to 0.5, got {self.hue!r}")
        for field in ("mixup", "cutmix"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{field}: expected a Beta parameter >= 0 (0: off), "
                                  f"got {value!r}")
        if self.cache not in (None, *CACHES):
            raise ConfigError(f"cache: expected one of {', '.join(CACHES)}, got {self.cache!r}")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight: expected balanced, got {self.class_weight!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict such as config.json's; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        if str(data.get("dataset", "")).startswith("folder:") and "test_split" not in data:
            # Saved before test_split existed, when a folder's val_split was its test split.
            data = {**data, "test_split": data.get("val_split"), "val_split": None}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        return cls(**data)
