"""training/budget.py: epochs planned for a time budget from measured speeds, the guard that
stops a slowed-down run, and a tiny budgeted run end to end (metrics.json's figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support import tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.core.rundir import RunFinished
from tfcnn.training.budget import MARGIN_SHARE, BudgetGuard, Plan, Speed, plan, plan_for
from tfcnn.training.feeds import FitData
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run

# 100 steps of 0.01 s: 1 s of training an epoch; no held-out images, free saves.
STEADY = Speed(trace_s=2.0, step_s=0.01, image_s=0.0, test_trace_s=0.0, save_s=0.0, probe_s=1.0)


def _data(train: int = 3200, test: int = 0, val: int = 0) -> FitData:
    def labels(n: int) -> np.ndarray:
        return np.zeros(n, np.uint8)

    return FitData(None, labels(train), None, labels(test),
                   None, labels(val) if val else None)


def test_plan_fits_the_most_whole_epochs_after_setup_and_fixed_costs():
    # 60 s less 3%, less 5 s spent, less 2 s tracing: 51.2 s left, 1 s an epoch.
    planned = plan(STEADY, 60.0, 5.0, _data(), 100, None, tests_every_epoch=False,
                   batch_norm=False)
    assert planned.epochs == int(60 * (1 - MARGIN_SHARE) - 5 - 2)
    assert planned.epoch_s == pytest.approx(1.0) and not planned.capped
    assert planned.planned_s <= 60.0
    assert planned.images_per_second == pytest.approx(32 / 0.01)  # 3200 images in 100 steps


def test_plan_stops_at_the_epochs_given_and_says_so():
    planned = plan(STEADY, 60.0, 0.0, _data(), 100, 7, tests_every_epoch=False,
                   batch_norm=False)
    assert planned.epochs == 7 and planned.capped
    assert "7 epochs (the --epochs limit) planned for the 60 s budget" in planned.describe()


def test_held_out_images_and_saves_are_paid_every_epoch():
    speed = Speed(2.0, 0.01, image_s=0.0001, test_trace_s=0.5, save_s=0.25, probe_s=1.0)
    planned = plan(speed, 60.0, 0.0, _data(test=1000, val=2000), 100, None,
                   tests_every_epoch=True, batch_norm=False)
    # Steps 1 s + validation 2000 images 0.2 s + model.keras and a checkpoint 0.5 s.
    assert planned.epoch_s == pytest.approx(1.7)
    # Tracing both steps, the final test and the calibration on the validation images.
    assert planned.fixed_s == pytest.approx(2.0 + 0.5 + 3000 * 0.0001 + 0.75 + 0.5)


def test_a_short_run_with_batch_norm_counts_the_recomputation():
    speed = Speed(0.0, 0.01, image_s=0.001, test_trace_s=0.0, save_s=0.0, probe_s=0.0)
    # 10 steps an epoch: even 48 epochs are too few steps for the moving averages to settle.
    without = plan_for(speed, 5.0, 0.0, _data(320), 10, None, False, has_batch_norm=False)
    with_bn = plan_for(speed, 5.0, 0.0, _data(320), 10, None, False, has_batch_norm=True)
    assert with_bn.epoch_s > without.epoch_s and with_bn.epochs < without.epochs


def test_a_budget_too_short_for_one_epoch_is_a_one_line_error():
    with pytest.raises(ConfigError) as caught:
        plan(STEADY, 2.0, 1.0, _data(), 100, None, tests_every_epoch=False, batch_norm=False)
    message = str(caught.value)
    assert "--time-budget 2 s: too short for one epoch here" in message and "\n" not in message


def test_the_guard_stops_a_run_that_slowed_down():
    planned = Plan(budget_s=10.0, epochs=5, epoch_s=1.0, fixed_s=1.0, spent_s=0.0,
                   images_per_second=100.0, capped=False)
    now = [0.0]
    guard = BudgetGuard(planned, started=0.0, clock=lambda: now[0])
    now[0] = 4.0
    assert guard.reason([{"epoch": 2, "seconds": 1.0}], 5) is None
    now[0] = 7.5  # epoch 3 took 3.5 s: the next one would end past 10 s with the final test
    reason = guard.reason([{"epoch": 3, "seconds": 3.5}], 5)
    assert reason and reason.startswith("stopped after epoch 3 of 5 planned")
    assert guard.reason([{"epoch": 5, "seconds": 3.5}], 5) is None  # the plan is done


def test_a_budgeted_run_records_its_plan_and_resuming_it_says_finished(tmp_path):
    config = TrainConfig(model="8C3-P2-D10", time_budget="6s", batch_size=32, seed=1,
                         steps_per_call=2)
    notes: list[str] = []
    seen = {}
    result = train_run(config, tmp_path / "run", Hooks(note=notes.append),
                       dataset=tiny_digits(512, 128), on_start=lambda info: seen.update(
                           plan=info.plan, epochs=info.config.epochs))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    budget = metrics["budget"]
    assert budget["seconds"] == 6.0 and budget["planned_seconds"] <= 6.0
    assert budget["planned_epochs"] == seen["epochs"] == len(result.epochs) >= 1
    assert budget["measured_images_per_second"] > 0 and budget["actual_seconds"] > 0
    assert "planned for the 6 s budget" in seen["plan"]
    assert any(n.startswith("time budget 6 s: the run took") for n in notes)
    # config.json keeps the planned epochs: a resumed run follows the same plan.
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == budget["planned_epochs"] and saved["time_budget"] == 6.0
    with pytest.raises(RunFinished):
        train_run(config, tmp_path / "run", Hooks(), resume=True,
                  dataset=tiny_digits(512, 128))


def test_a_budget_is_refused_with_multi_worker_training(tmp_path):
    from tfcnn.training.strategy import Cluster, Distribution

    dist = Distribution("multi-worker", cluster=Cluster.__new__(Cluster))
    with pytest.raises(ConfigError, match="time_budget: not with multi-worker training"):
        train_run(TrainConfig(model="8C3-P2-D10", time_budget=60), tmp_path / "run", Hooks(),
                  dataset=tiny_digits(64, 16), distribution=dist)
