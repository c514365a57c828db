"""Out-of-sample probabilities by K-fold cross-training.

The images are split into K stratified, seeded folds. For each fold a fresh network trains
on the other folds' images, as an ordinary run directory (`train_run`, into
`OUT/folds/fold-k/`, its held-out fold as the run's test set), and the held-out fold's
probabilities come from that run's model through the one inference path
(`TrainedModel.load(run).predict_proba`, with its shift test-time augmentation). So every
image's probabilities come from a model that never saw its label.

The fold recipe is the `--preset fast` one (its network, one-cycle Adam with its betas,
bfloat16 where the CPU has it; colour images get another network, `COLOUR_NET`) with batch
128, 12 epochs and mild augmentation (2 px shifts,
10 degree rotations, 10% zooms). Measured on 6,000 MNIST digits with 5% of the labels
flipped (benchmarks/audit_noisy_digits.py's folder, 2026-12-02, 2-core AMD EPYC, float32): held-out
accuracy against the true labels 96.7% for 6 plain epochs (cleanlab precision/recall
0.88/0.92), 98.1% for 10 with augmentation (0.91/0.96), 98.1% for 12 with augmentation and
TTA (0.93/0.94 and 0.92/0.95 on two sets with cleanlab's default filter; see `labels` for
the filter used). A wider network (32C5-P2-64C3-P2-D256) took 1.7x the time for the same
results, a batch-norm one (the best preset's) 4.7x for worse (0.88/0.93), and label
smoothing 0.1 lowered the recall (0.91): its softer probabilities hide the wrong labels.
The epochs follow `--time-budget` (`tfcnn.audit.budget`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.audit.budget import Planner, Watch
from tfcnn.audit.data import AuditData
from tfcnn.core.errors import ConfigError

MAX_FOLDS = 20


# The fold networks (the last layer sized to the classes). Colour photos get batch norm and
# global pooling: on fashion_photos (7,000 RGB images at 32x32, 60-90 s budgets) the digit
# network stayed at chance (10% held-out, 8-10 epochs, lr 0.01 or 0.003) where this one
# reached 31% in 3 epochs (the photo preset reaches ~80% in 15 minutes: a budget of a few
# minutes cannot make a good photo model on 2 cores, and the report then says so).
GREY_NET, GREY_LR = "24C5-P2-32C3-P2-D256-D{classes}", 0.01
COLOUR_NET, COLOUR_LR = "32C3-BN-P2-64C3-BN-P2-128C3-BN-GAP-D{classes}", 0.003


@dataclass(frozen=True)
class Recipe:
    """How each fold trains (see the module doc); `epochs` is the most a fold gets.
    `model` and `lr` None: chosen for the images by `for_data`."""

    model: str | None = None
    epochs: int = 12
    batch_size: int = 128
    lr: float | None = None
    shift: float = 2.0
    rotate: float = 10.0
    zoom: float = 0.1
    # Training calls of 10 steps (not 50): the first epoch's later calls time the steady
    # throughput after tracing, which the time budget plans from.
    steps_per_call: int = 10

    def for_data(self, classes: int, colour: bool) -> Recipe:
        """The recipe with its network and learning rate chosen for `classes` classes of
        grey or `colour` images, where not given."""
        net, lr = (COLOUR_NET, COLOUR_LR) if colour else (GREY_NET, GREY_LR)
        return dataclasses.replace(self, model=self.model or net.format(classes=classes),
                                   lr=self.lr if self.lr is not None else lr)


@dataclass(frozen=True)
class FoldResult:
    """One fold's run: where it is, what it trained, how its held-out images fared."""

    fold: int
    run: Path
    epochs: int
    planned_epochs: int
    train_images: int
    held_out: int
    seconds: float
    agreement: float  # held-out images whose predicted class is their given label

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.fold, "run": str(self.run), "epochs": self.epochs,
                "planned_epochs": self.planned_epochs, "train_images": self.train_images,
                "held_out": self.held_out, "seconds": round(self.seconds, 2),
                "agreement": round(self.agreement, 6)}


@dataclass(frozen=True)
class CrossResult:
    """Every image's out-of-sample probabilities (N, classes), and the folds' runs."""

    probabilities: np.ndarray
    folds: list[FoldResult]
    seconds: float
    budget_s: float | None
    notes: list[str]


def check_folds(folds: int, images: int) -> None:
    """`folds` must be 2..MAX_FOLDS, with at least 2 images per fold."""
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= MAX_FOLDS:
        raise ConfigError(f"--folds: expected a whole number from 2 to {MAX_FOLDS}, "
                          f"got {folds!r}")
    if images < 2 * folds:
        raise ConfigError(f"--folds {folds}: needs at least {2 * folds} images, the dataset "
                          f"has {images}")


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each image: each class dealt round the folds in a seeded
    random order, continuing where the previous class stopped, so folds differ in size by
    at most one image and in each class's count by at most one."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return fold


class _Calls:
    """The loop's progress hook for a timed epoch: when each training call ends."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        watch.train_started = watch.now()

    def update(self, n: int) -> None:
        self.watch.calls.append((self.watch.now(), n))

    def close(self) -> None:
        pass


class _Untimed:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _FoldHooks:
    """The training hooks of one fold: time its first epoch, plan, stop when told."""

    planner: Planner
    watch: Watch
    planned: int
    folds_after: int
    first_fold: bool
    restart: bool = False
    trained: int = 0
    last_epoch_end: float = 0.0

    def hooks(self) -> Any:
        from tfcnn.training.hooks import Hooks

        return Hooks(progress=self._progress, epoch_begin=self._epoch_begin,
                     epoch_end=self._epoch_end, stop_requested=self._stop)

    def _progress(self, epoch: int, steps: int, done: int) -> Any:
        return _Calls(self.watch) if epoch == 1 else _Untimed()

    def _epoch_begin(self, epoch: int) -> None:
        if epoch == 1:
            self.watch.first_epoch_at = self.watch.now()

    def _epoch_end(self, record: dict[str, Any]) -> None:
        now = self.last_epoch_end = self.watch.now()
        self.trained = int(record["epoch"])
        if self.trained == 1:
            self.watch.epoch_ended = now
            if self.first_fold:
                self.restart = not self.planner.plan_after_first_epoch(self.watch.timing(), now)

    def _stop(self) -> bool:
        return self.restart or self.planner.stop_after(
            self.trained, self.planned, self.folds_after, self.watch.now())


def cross_train(data: AuditData, out: Path, *, folds: int, recipe: Recipe, seed: int,
                planner: Planner, progress: Callable[[str], None] | None = None
                ) -> CrossResult:
    """Train `folds` fold models into `out/fold-k` and return the held-out probabilities."""
    check_folds(folds, len(data.labels))
    which = assign_folds(data.labels, folds, seed)
    probabilities = np.zeros((len(data.labels), len(data.class_names)))
    results: list[FoldResult] = []
    notes: list[str] = []
    with _quiet_retracing():
        for k in range(folds):
            result, hooks = _planned_fold(data, which, k, out, recipe, seed, planner, notes)
            held = which == k
            probabilities[held] = _held_out_probabilities(result.run, data.images[held])
            planner.fold_done(hooks.watch.timing(), time.perf_counter() - hooks.last_epoch_end)
            agreement = float((probabilities[held].argmax(1) == data.labels[held]).mean())
            result = dataclasses.replace(result, agreement=agreement,
                                         seconds=time.perf_counter() - hooks.watch.started)
            results.append(result)
            if result.epochs < result.planned_epochs:
                notes.append(f"fold {k + 1} stopped after {result.epochs} of "
                             f"{result.planned_epochs} epochs to keep the time budget")
            if progress:
                progress(f"fold {k + 1}/{folds}: {result.epochs} epochs on "
                         f"{result.train_images:,} images, {100 * agreement:.1f}% of its "
                         f"{result.held_out:,} held-out images predicted as labelled, "
                         f"{result.seconds:.1f} s")
    return CrossResult(probabilities, results, time.perf_counter() - planner.started,
                       planner.budget_s, notes)


@contextlib.contextmanager
def _quiet_retracing() -> Iterator[None]:
    """TensorFlow's logger at ERROR while the folds train: each builds new steps, and from the
    fifth on TensorFlow warns that its functions are "retracing", which is expected here."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _planned_fold(data: AuditData, which: np.ndarray, k: int, out: Path, recipe: Recipe,
                  seed: int, planner: Planner, notes: list[str]
                  ) -> tuple[FoldResult, _FoldHooks]:
    """Fold `k` with the epochs the plan gives it; fold 1 restarted if its first epoch
    shows the recipe's epochs do not fit (its first try is kept beside it)."""
    folds = planner.folds
    epochs = planner.epochs if k == 0 else planner.epochs_that_fit(folds - k,
                                                                   time.perf_counter())
    if epochs < 1:
        notes.append(f"fold {k + 1} trained 1 epoch although the time left did not cover "
                     "it (the machine slowed down): the budget is exceeded")
        epochs = 1
    result, hooks = _run_fold(data, which, k, out, epochs, recipe, seed, planner,
                              plans=k == 0)
    if not hooks.restart:
        return result, hooks
    aside = out / f"fold-{k + 1}-first-try"
    result.run.rename(aside)
    notes.append(f"fold 1 restarted with {planner.epochs} epochs after its first epoch "
                 f"showed that {recipe.epochs} would not fit the time budget (first try "
                 f"kept in {aside})")
    return _run_fold(data, which, k, out, planner.epochs, recipe, seed, planner, plans=False)


def _fold_config(data: AuditData, recipe: Recipe, epochs: int, seed: int) -> Any:
    from tfcnn.core.presets import config_from_preset

    given: dict[str, Any] = {
        "dataset": data.name, "model": recipe.model, "epochs": epochs,
        "batch_size": recipe.batch_size, "lr": recipe.lr, "schedule": "onecycle",
        "shift": recipe.shift, "rotate": recipe.rotate, "zoom": recipe.zoom, "seed": seed,
        "steps_per_call": recipe.steps_per_call}
    if data.is_folder:
        height, width = data.images.shape[1:3]
        given.update(image_size=f"{height}x{width}", grayscale=data.images.ndim == 3)
    return config_from_preset("fast", given)


def _run_fold(data: AuditData, which: np.ndarray, k: int, out: Path, epochs: int,
              recipe: Recipe, seed: int, planner: Planner, *, plans: bool
              ) -> tuple[FoldResult, _FoldHooks]:
    """Train fold `k` (0-based) into `out/fold-{k+1}`; `plans`: its first epoch plans the
    epochs of all folds (fold 1's first try)."""
    from tfcnn.data.locate import LoadedDataset
    from tfcnn.training.run import train_run

    train, held = which != k, which == k
    labels = data.labels.astype(np.uint8 if len(data.class_names) <= 256 else np.int32)
    dataset = LoadedDataset(name=data.name, x_train=data.images[train], y_train=labels[train],
                            x_test=data.images[held], y_test=labels[held],
                            class_names=data.class_names, source=data.name)
    watch = Watch()
    hooks = _FoldHooks(planner, watch, epochs, planner.folds - k - 1, first_fold=plans)
    run = out / f"fold-{k + 1}"
    watch.started = watch.now()
    train_run(_fold_config(data, recipe, epochs, seed + k), run, hooks.hooks(), dataset=dataset)
    return FoldResult(k + 1, run, hooks.trained, epochs, int(train.sum()), int(held.sum()),
                      0.0, 0.0), hooks


def _held_out_probabilities(run: Path, images: np.ndarray) -> np.ndarray:
    from tfcnn.models.trained import TrainedModel

    return TrainedModel.load(run).predict_proba(images, tta=True)
