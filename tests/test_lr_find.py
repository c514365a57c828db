"""`tfcnn lr-find` / `tfcnn.steer.lr_find`: the learning-rate range test.

The pure parts (rates, smoothing, divergence, the suggestion rule) are tested on made-up
losses; one CLI run on 500 MNIST images checks the figure, the record and the printed
suggestion, and the bad values get one-line errors before TensorFlow loads.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfcnn.cli import main
from tfcnn.steer.lr_find import (
    DIVERGE,
    _until_divergence,
    centred,
    diverged,
    rates,
    smoothed,
    suggestion,
)


def test_rates_rise_exponentially_from_start_to_end():
    lrs = rates(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)


def test_smoothing_is_debiased_and_the_centred_curve_has_no_lag():
    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards 0
    step = [1.0] * 20 + [0.0] * 20
    running, centre = smoothed(step), centred(step)
    # A running average is late at the step; the centred curve crosses half-way there.
    assert running[20] > 0.7
    assert centre[19] > 0.5 > centre[20]


def test_divergence_stops_the_test_past_four_times_the_lowest_loss():
    lrs = rates(1e-5, 1.0, 30)
    losses = [2.0] * 10 + [0.5] * 10 + [50.0] * 10
    kept_lrs, kept, why = _until_divergence(lrs, losses)
    assert 20 < len(kept) < 30 and len(kept_lrs) == len(kept)
    assert smoothed(kept)[-1] > DIVERGE * min(smoothed(kept))
    assert "4x its lowest" in why
    assert diverged(kept) and not diverged(kept[:20])
    nan_lrs, nan_kept, why = _until_divergence(lrs[:5], [1.0, 1.0, math.nan, 1.0, 1.0])
    assert nan_kept == [1.0, 1.0] and "not finite" in why


def test_suggestion_is_a_tenth_of_the_lowest_point_within_the_range():
    lrs = rates(1e-6, 1.0, 61)
    loss = [2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 3) * 3)) for lr in lrs]
    lowest = int(np.argmin(loss))
    suggested, at_min, steepest = suggestion(lrs, loss)
    assert at_min == lrs[lowest]
    assert suggested == pytest.approx(at_min / 10, rel=0.05)
    assert steepest == pytest.approx(1e-3, rel=0.3)  # the sigmoid's middle
    # A loss that only rises: the lowest point is the first, the suggestion stays in range.
    suggested, at_min, _ = suggestion(lrs, sorted(loss))
    assert at_min == lrs[0] and suggested == lrs[0]


@pytest.mark.parametrize("flags, message", [
    (["--start-lr", "-1"], "--start-lr: expected a positive number, got -1.0"),
    (["--end-lr", "1e-9"], "--end-lr: expected more than --start-lr 1e-07, got 1e-09"),
    (["--steps", "2"], "--steps: expected an integer of at least 5, got 2"),
    (["--model", "8C3-P2-D7"], "the last layer gives 7 outputs"),
])
def test_bad_values_get_one_line(tmp_path, capsys, flags, message):
    assert main(["lr-find", "--out", str(tmp_path / "lr"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "lr").exists()


def test_out_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lr-find", "--model", "8C3-P2-D10"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_plot_and_the_record(shared_datasets_dir, tmp_path, capsys):
    out = tmp_path / "lr"
    code = main(["lr-find", "--model", "8C3-P2-D10", "--limit-train", "500", "--seed", "1",
                 "--data-dir", str(shared_datasets_dir), "--steps", "40", "--start-lr", "1e-5",
                 "--end-lr", "10", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "lr_find.json").read_text())
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    suggested = record["suggested_lr"]
    assert 1e-5 <= suggested <= 10
    assert 5 <= len(record["losses"]) <= 40 and len(record["lrs"]) == len(record["losses"])
    assert all(math.isfinite(v) for v in record["raw_losses"])
    assert record["lrs"] == sorted(record["lrs"])
    assert record["settings"]["config"]["model"] == "8C3-P2-D10"
    # The losses fell from the untrained ~ln(10) before the rate got too high.
    assert min(record["losses"]) < record["losses"][0] - 0.2
    line = (f"suggested learning rate: {suggested:g}  (tfcnn train --data-dir "
            f"{shared_datasets_dir} --model 8C3-P2-D10 --seed 1 --limit-train 500 "
            f"--lr {suggested:g})")
    assert line in printed.splitlines()


@pytest.mark.slow
def test_python_api_returns_the_result(shared_datasets_dir, tmp_path):
    from tfcnn.core.config import TrainConfig
    from tfcnn.steer.lr_find import lr_find

    config = TrainConfig(model="8C3-P2-D10", limit_train=300, seed=2,
                         data_dir=str(shared_datasets_dir), shift=1.0)
    found = lr_find(config, out=tmp_path / "lr", steps=12, start_lr=1e-4, end_lr=1.0)
    assert found.png.is_file() and found.json.is_file()
    assert 1e-4 <= found.suggested_lr <= 1.0
    assert len(found.lrs) == len(found.losses) == len(found.raw_losses) <= 12
    assert found.to_json()["suggested_lr"] == found.suggested_lr
    assert "--shift 1.0" in found.command and found.command.endswith(
        f"--lr {found.suggested_lr:g}")
