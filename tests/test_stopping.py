"""training/stopping.py: `--early-stop N` (patience on the validation loss), its settings
check, and a run that stops early, keeps its best epoch and says it finished on resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from support import tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import TfcnnError
from tfcnn.core.rundir import RunFinished
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run
from tfcnn.training.stopping import early_stop_rule, first_reason, patience_ran_out


def _records(*losses: float) -> list[dict]:
    return [{"epoch": e, "val_loss": v} for e, v in enumerate(losses, 1)]


def test_patience_counts_epochs_since_the_best_validation_loss():
    assert patience_ran_out(_records(0.9, 0.8, 0.7), 1) is None
    assert patience_ran_out(_records(0.9, 0.8, 0.85), 1).startswith("early stop after epoch 3")
    assert patience_ran_out(_records(0.9, 0.8, 0.85), 2) is None
    # Equal losses are no improvement: the first of them stays the best.
    assert "best 0.8000 at epoch 2" in patience_ran_out(_records(0.9, 0.8, 0.8, 0.8), 2)
    assert patience_ran_out([{"epoch": 1, "val_loss": None}], 1) is None  # nothing judged


def test_no_patience_is_no_rule_and_rules_give_the_first_reason():
    assert early_stop_rule(None) is None and early_stop_rule(0) is None
    rules = (lambda r: None, early_stop_rule(1), lambda r: "other")
    assert first_reason(rules, _records(0.5, 0.6)).startswith("early stop")
    assert first_reason(rules[:1], _records(0.5, 0.6)) is None


def test_early_stop_without_a_validation_split_is_a_settings_error():
    with pytest.raises(TfcnnError, match="needs a validation split to watch"):
        TrainConfig(early_stop=2)
    assert TrainConfig(early_stop=2, val_split=0.1).early_stop == 2


def _with_validation():
    data = tiny_digits(256, 64, seed=3)
    val = tiny_digits(64, 8, seed=4)
    return dataclasses.replace(data, x_val=val.x_train, y_val=val.y_train)


@pytest.mark.slow
def test_a_run_stops_early_keeps_its_best_epoch_and_resuming_says_finished(tmp_path):
    # A large learning rate on 256 images: the validation loss soon stops improving.
    config = TrainConfig(model="16C3-P2-D32-D10", epochs=40, early_stop=2, val_split=0.2,
                         batch_size=16, lr=0.01, seed=1)
    result = train_run(config, tmp_path / "run", Hooks(), dataset=_with_validation())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    stopped = metrics["stopped"]
    assert len(result.epochs) < 40 and stopped["after_epoch"] == len(result.epochs)
    assert stopped["reason"].startswith(f"early stop after epoch {len(result.epochs)}")
    losses = [r["val_loss"] for r in result.epochs]
    best = losses.index(min(losses)) + 1
    assert best == len(losses) - 2  # no better loss in the 2 epochs of patience
    assert metrics["best_epoch"] < len(result.epochs)  # the best epoch's weights were kept
    assert metrics["test_accuracy"] is not None  # the final test ran on the kept model
    with pytest.raises(RunFinished) as caught:
        train_run(config, tmp_path / "run", Hooks(), resume=True, dataset=_with_validation())
    assert "already finished: early stop after epoch" in str(caught.value)
