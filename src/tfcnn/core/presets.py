"""Training presets: named, measured recipes that fill in `TrainConfig` settings.

A preset only supplies defaults: flags given on the command line still win. Each recipe's
measured result, with the command that reproduces it, is in docs/benchmarks.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfcnn.core.config import TrainConfig
from tfcnn.core.durations import parse_duration
from tfcnn.core.errors import ConfigError
from tfcnn.core.settings import SettingError

PRESETS: dict[str, dict[str, Any]] = {
    # TrainConfig's own defaults: the tutorial's run.
    "tutorial": {},
    # Shortest time to >= 99.0% MNIST test accuracy on a 2-core CPU, after
    # tuomaso/train_mnist_fast: a small net without batch norm (conv 24 5x5, pool, conv 32
    # 3x3, pool, dense 256), batch 256, one-cycle Adam peaking at 0.01 with betas (0.7, 0.9)
    # (ADAM_BETAS), in bfloat16 where the CPU has it natively, tested after the last epoch
    # only. Two epochs: one scored 98.82-99.06% (too close to 99), two 99.22-99.29%; with
    # batch norm each step cost ~1.7x more. Measured in docs/benchmarks.md.
    "fast": {
        "model": "24C5-P2-32C3-P2-D256-D10",
        "batch_size": 256,
        "epochs": 2,
        "lr": 0.01,
        "schedule": "onecycle",
        "warmup": 0.2,
    },
    # Highest single-model accuracy within ~10 minutes of this 2-core CPU (MNIST): a deeper
    # BN CNN (3x3 convolutions after a 5x5 one, no dense layer), in-graph augmentation
    # (shifts, small rotations and zooms), label smoothing, one-cycle AdamW with decoupled
    # weight decay, a full shuffle. Measured in docs/benchmarks.md.
    "best": {
        "model": "32C5-P2-BN-64C3-BN-64C3-P2-BN-128C3-BN-DO40-D10",
        "batch_size": 128,
        "epochs": 24,
        "lr": 0.004,
        "schedule": "onecycle",
        "warmup": 0.2,
        "weight_decay": 0.005,
        "label_smoothing": 0.1,
        "shift": 2.5,
        "rotate": 10.0,
        "zoom": 0.1,
        "shuffle_buffer": 60_000,
    },
    # Colour photos (issue 17; chosen on fashion_photos with --val-split 0.1 of train/, never
    # its test/): a residual network ending in global average pooling at 48x48 px, a random
    # resized crop (50-100% of the area) with the mirror folded in and mild colour jitter,
    # one-cycle AdamW, label smoothing, bfloat16 where native. Validation accuracy by epochs
    # (seed 1): 8: 54-59%, 20: 76.5%, 30: 79.3%, 40: 82.2% (still rising: limited by epochs,
    # not overfitting). 40 epochs of all 6,000 images took ~14 minutes on the 2-core Xeon and
    # ~30 on an AVX2-only EPYC, so the recipe is a 15-minute budget, not an epoch count: a
    # slower CPU trains fewer epochs (training/budget.py). docs/benchmarks.md, "--preset photo".
    "photo": {
        "model": "32C3p-BN-R32-P2-R64S2-R128S2-GAP-D10",
        "image_size": "48",
        "grayscale": False,
        "batch_size": 64,
        "time_budget": 900.0,
        "epochs": 40,  # with --time-budget none
        "lr": 0.003,
        "schedule": "onecycle",
        "warmup": 0.2,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "hflip": True,
        "crop_area": 0.5,
        "brightness": 0.1,
        "contrast": 0.1,
        "saturation": 0.2,
        "hue": 0.03,
    },
}

# Per-dataset changes to a preset (applied before the flags given): clothes are not digits.
DATASET_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # Mirrored clothes are still the same clothes (rotated and zoomed ones much less so),
    # and the harder classes (shirt / T-shirt / pullover / coat) want a wider network that
    # keeps the full-size feature maps for two layers: trials with early pooling stayed at
    # 93.2-93.9%. bfloat16 arithmetic (this CPU has AVX512-BF16) runs these layers 2-3x
    # faster, which pays for the width and 32 epochs (~28 min; with 28, TTA scored 0.1-0.4
    # points less); random erasing and a strong weight decay keep the wide network from
    # overfitting (96.3% train, 93.8% test without).
    ("best", "fashion_mnist"): {
        "model": "32C3-BN-64C3-P2-BN-128C3-BN-128C3-P2-BN-256C3-BN-DO30-D10",
        "precision": "mixed_bfloat16",
        "epochs": 32,
        "weight_decay": 0.05,
        "erase": 0.5,
        "hflip": True,
        "shift": 2.0,
        "rotate": 0.0,
        "zoom": 0.0,
    },
}


# Adam's (beta_1, beta_2) where a preset's recipe differs from Keras's (0.9, 0.999); not a
# TrainConfig setting, so keyed on the preset's name (config.json records it).
ADAM_BETAS: dict[str, tuple[float, float]] = {"fast": (0.7, 0.9)}

# Presets that train in bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX).
# On this project's Xeon (AMX-BF16) the fast preset's epochs took 0.6x the float32 time.
BFLOAT16_WHERE_NATIVE: set[str] = {"fast", "photo"}

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bfloat16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The CPU's native bfloat16 features (`avx512_bf16`, `amx_bf16`) named in `cpuinfo`."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no /proc: assume none
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return [flag for flag in BF16_CPU_FLAGS if flag in flags]
    return []


# Presets that test after their last epoch only: the test pass of the other epochs changes
# nothing trained and would count in the run's train_seconds.
TEST_AT_END_ONLY: set[str] = {"fast", "photo"}


def tests_every_epoch(config: TrainConfig) -> bool:
    """False when `config`'s preset tests after the last epoch only."""
    return config.preset not in TEST_AT_END_ONLY


def adam_betas(config: TrainConfig) -> tuple[float, float]:
    """Adam's (beta_1, beta_2) for `config`: its preset's, else Keras's defaults."""
    return ADAM_BETAS.get(config.preset or "", (0.9, 0.999))


# With a time budget and no --epochs, the budget alone decides (training/budget.py); this
# is only a bound on a plan that would otherwise be unbounded on a tiny dataset.
BUDGET_MAX_EPOCHS = 1000


def _budget_epochs(recipe: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`recipe` under `given`; with a time budget, `epochs` (the most to train) is the
    one given, else BUDGET_MAX_EPOCHS: a recipe's epochs are for runs without a budget."""
    settings = {**recipe, **given}
    if _has_budget(settings.get("time_budget")) and "epochs" not in given:
        settings["epochs"] = BUDGET_MAX_EPOCHS
    return settings


def _has_budget(value: Any) -> bool:
    """Whether a time_budget setting asks for a budget ("none" does not); a value that is
    not a duration counts as one here, and TrainConfig refuses it."""
    try:
        return parse_duration(value) is not None
    except ConfigError:
        return True


def preset_network(name: str, dataset: str) -> str | None:
    """The network `name`'s recipe trains on `dataset` (None: the default's), as written."""
    recipe = {**PRESETS.get(name, {}), **DATASET_PRESETS.get((name, dataset), {})}
    return recipe.get("model")


def config_from_preset(name: str | None, given: dict[str, Any],
                       cpuinfo: str | Path = "/proc/cpuinfo") -> TrainConfig:
    """TrainConfig from a preset's settings overridden by the explicitly `given` ones.

    A preset in BFLOAT16_WHERE_NATIVE computes in mixed bfloat16 on a CPU that has it
    natively (read from `cpuinfo`), in float32 elsewhere; `--precision` still wins.
    """
    if name is None:
        return TrainConfig(**_budget_epochs({}, given))
    if name not in PRESETS:
        raise SettingError("preset", f"{{setting}} {name!r}: unknown (known: "
                                     f"{', '.join(sorted(PRESETS))})")
    dataset = given.get("dataset", TrainConfig.dataset)
    for_dataset = DATASET_PRESETS.get((name, dataset), {})
    native = ({"precision": "mixed_bfloat16"}
              if name in BFLOAT16_WHERE_NATIVE and cpu_bfloat16_flags(cpuinfo) else {})
    recipe = {**PRESETS[name], **for_dataset, **native}
    return TrainConfig(**{**_budget_epochs(recipe, given), "preset": name})
