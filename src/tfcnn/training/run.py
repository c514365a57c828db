"""Starting and resuming a training run: data, model, run directory, then the loop.

`train_run(config, run_path, hooks)` is what `tfcnn train` calls. With `resume=True` it
reads the state from the run directory's latest checkpoint and continues; with the same
seed, the result is bit-for-bit the one an uninterrupted run gives on the CPU.
Under a tf.distribute strategy (strategy.py) every worker calls it alike; the chief writes
the run directory, the others a temporary copy that is removed at the end.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError, TrainingInterrupted
from tfcnn.core.rundir import (
    RunDir,
    clean_stale_temp_files,
    library_versions,
    update_metrics,
    write_config,
)
from tfcnn.core.runlock import locked_run
from tfcnn.data.files import ImageFiles
from tfcnn.data.locate import LoadedDataset
from tfcnn.data.registry import prepare_step
from tfcnn.models.network import build_model
from tfcnn.spec import notation
from tfcnn.spec.backbones import is_backbone_spec
from tfcnn.training import budget
from tfcnn.training.calibrate import calibrate_model_file
from tfcnn.training.diskfull import disk_full_message, is_disk_full
from tfcnn.training.loop import Hooks, Training, fit
from tfcnn.training.recipe import make_optimizer
from tfcnn.training.start import (
    RunInfo,
    RunResult,
    Start,
    check_model_fits,
    check_unfinished,
    fit_data,
    image_shape_of,
    planned,
    restore,
    sized_data,
    steps_and_state,
    stop_rules,
)
from tfcnn.training.strategy import Distribution, create_distribution

__all__ = ["RunInfo", "RunResult", "build_run_model", "check_model_fits", "image_shape_of",
           "make_optimizer", "train_run"]


def train_run(config: TrainConfig, run_path: Path, hooks: Hooks, *, resume: bool = False,
              on_start: Callable[[RunInfo], None] | None = None,
              dataset: LoadedDataset | None = None,
              distribution: Distribution | None = None) -> RunResult:
    """Train `config` into `run_path` (new, or resumed from its checkpoints).

    `distribution`: the strategy to train under; None creates the one `config.strategy` asks
    for (create it first for multi-worker: it must precede TensorFlow's device set-up).
    """
    started = time.perf_counter()  # a time budget's clock
    model_name, notation_str = notation.resolve_model(config.model)
    dist = distribution or create_distribution(config.strategy)
    if config.time_budget and dist.multi_worker:
        raise ConfigError("time_budget: not with multi-worker training (each worker would "
                          "plan its own epochs); give the epochs instead")
    if config.seed is None:
        config = config.replace(seed=dist.chief_seed(secrets.randbelow(2**31)))
    head, dataset, skipped = sized_data(config, model_name, notation_str, dataset)

    run = RunDir(run_path)
    out = RunDir(dist.worker_dir(run.path))  # where this process writes
    start = Start(config, run, out, dataset, skipped, model_name, head.notation, dist, resume,
                   head, started)
    try:
        # One process per run directory (core/runlock.py); a multi-worker run's chief's.
        with locked_run(run.path, enabled=dist.chief) as lock:
            if lock.why_not and hooks.note:
                hooks.note(f"{run.path}: not locked against a second tfcnn train "
                           f"({lock.why_not})")
            if not resume and dist.chief and run.config.exists():
                raise RunDirError(f"{run.path}: already holds a run (use --resume {run.path} "
                                  "to continue it, or choose another --out)")
            with dist.worker_errors(run.path):
                with dist.scope():
                    trained = _train(start, hooks, on_start)
                # Outside the scope: a model loaded under a multi-worker strategy broadcasts
                # its variables to the other workers, which have finished by now.
                if dist.chief:
                    _finish(trained, hooks)
                return trained.result
    except (OSError, tf.errors.OpError) as exc:
        if not is_disk_full(exc):
            raise
        raise RunDirError(disk_full_message(exc, out.path, run.path)) from None
    except TrainingInterrupted as exc:
        if dist.chief:
            raise
        raise TrainingInterrupted(f"interrupted with the other workers; the chief saved a "
                                  f"checkpoint; continue with: tfcnn train --resume {run.path}",
                                  exc.exit_code - 128) from None
    finally:
        dist.remove_worker_dir(out.path)


def build_run_model(config: TrainConfig, notation_str: str,
                    image_shape: tuple[int, int, int], dataset: LoadedDataset) -> keras.Model:
    """A notation model, or a `keras:NAME` backbone with a new head (its `--weights`)."""
    # Digits get the MNIST-style step before the model's own preprocessing (registry).
    prepare = prepare_step(dataset.name)
    if is_backbone_spec(notation_str):
        from tfcnn.models.backbones import build_backbone_model

        return build_backbone_model(notation_str, image_shape, dataset.class_names,
                                    config.seed, weights=config.weights, prepare=prepare,
                                    dataset=dataset.name, precision=config.precision)
    return build_model(notation_str, image_shape, dataset.class_names, config.seed,
                       prepare=prepare, dataset=dataset.name, precision=config.precision)


def _cache_of(config: TrainConfig, dataset: LoadedDataset) -> str:
    """Where the run keeps a folder's decoded images (RunInfo.cache)."""
    if not dataset.name.startswith("folder:"):
        return ""
    if not isinstance(dataset.x_train, ImageFiles):
        return "memory"
    return "disk" if config.cache == "disk" else "stream"


@dataclass(frozen=True)
class _Trained:
    """What the chief finishes after the epochs (`_finish`)."""

    result: RunResult
    start: Start        # with the planned epochs
    training: Training
    plan: budget.Plan | None


def _train(start: Start, hooks: Hooks, on_start: Callable[[RunInfo], None] | None
           ) -> _Trained:
    """train_run's work, in the strategy's scope; this process writes to `start.out`."""
    run, out, dist, dataset = start.run, start.out, start.dist, start.dataset
    out.path.mkdir(parents=True, exist_ok=True)
    # Leftovers of a kill -9 in the middle of a save (the chief's directory only).
    cleaned = tuple(clean_stale_temp_files(run)) if start.resume and dist.chief else ()
    image_shape = image_shape_of(dataset.x_train)
    data = fit_data(start.config, dataset)
    model = build_run_model(start.config, start.notation, image_shape, dataset)
    start, plan = planned(start, model, image_shape, data)
    config = start.config
    steps, state, phases = steps_and_state(start, model, image_shape)
    resumed_from, resume_note, records = restore(start, state)
    dist.check_same_start(int(state.epoch.numpy()), int(state.step.numpy()), run.path)
    rules = stop_rules(start, plan)
    check_unfinished(start, state, rules, records)
    write_config(out, config, library_versions())
    if plan is not None:  # the measurement and set-up count as training time
        state.seconds.assign(time.perf_counter() - start.started)
    if on_start:
        on_start(RunInfo(
            config=config, run_dir=run.path, dataset_source=dataset.source,
            num_train=len(data.y_train), num_test=len(data.y_test),
            model_name=start.model_name, parameters=model.count_params(),
            resumed_from=resumed_from, skipped=start.skipped,
            distribution=None if dist.strategy is None else dist.describe(), chief=dist.chief,
            num_val=0 if data.y_val is None else len(data.y_val), resume_note=resume_note,
            cleaned=cleaned, cache=_cache_of(config, dataset), head=start.head.describe(),
            plan=plan.describe() if plan else ""))
    training = Training(model=model, steps=steps, state=state, data=data, config=config,
                        run=out, model_name=start.model_name, hooks=hooks,
                        distribution=dist if dist.strategy is not None else None,
                        on_epoch=phases.on_epoch if phases else None, stop_rules=rules,
                        facts={"budget": plan.record()} if plan else {})
    records, test_accuracy = fit(training, records)
    result = RunResult(run.path, records, float(state.seconds.numpy()), test_accuracy)
    return _Trained(result, start, training, plan)


def _finish(trained: _Trained, hooks: Hooks) -> None:
    """The kept model's calibration, stored in model.keras; a time budget's actual figures."""
    start, training = trained.start, trained.training
    if trained.result.epochs:
        fitted = calibrate_model_file(start.out.model, training.data, start.config.seed or 0)
        if hooks.note:
            hooks.note(fitted.describe())
    if trained.plan is not None:
        _record_budget(start.out, training, trained.plan, start.started, hooks)


def _record_budget(out: RunDir, training: Training, plan: budget.Plan, started: float,
                   hooks: Hooks) -> None:
    """metrics.json's budget with the actual seconds, the whole run's; a note saying them."""
    actual = time.perf_counter() - started
    facts = {**training.facts, "budget": {**plan.record(), "actual_seconds": round(actual, 3)}}
    update_metrics(out, **facts)
    if hooks.note:
        hooks.note(f"time budget {budget.describe_seconds(plan.budget_s)}: the run took "
                   f"{actual:.1f} s (planned {plan.planned_s:.1f} s)")
