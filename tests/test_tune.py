"""`tfcnn tune` / `tfcnn.steer.tune`: the Keras Tuner search whose trials are run directories.

The search space and the reproducing command are tested without TensorFlow; one tiny
search (2 trials of 2 epochs on 500 MNIST images) checks the trial folders, results.json,
the printed command and that running it again continues rather than restarts.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tfcnn.api.training import training_config
from tfcnn.cli import main
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.steer import tune as tune_module
from tfcnn.steer.command import reproducing_command, reproducing_settings
from tfcnn.steer.space import Space, augmentation, widened


def test_width_scales_every_count_but_the_logits_and_fits_the_classes():
    tutorial = TrainConfig()
    assert widened(tutorial, 0.5, 10) == "16C3-P2-16C3-P2-16C5S2-BN-DO40-D64-D10"
    assert widened(tutorial, 2.0, 3) == "64C3-P2-64C3-P2-64C5S2-BN-DO40-D256-D3"
    photo = training_config({"preset": "photo", "dataset": "folder:/nowhere"})
    assert widened(photo, 1.5, 4) == "48C3P-BN-R48-P2-R96S2-R192S2-GAP-D4"


def test_width_is_searched_for_named_networks_and_presets_only():
    assert Space.around(TrainConfig(), 10).widths
    assert Space.around(training_config({"preset": "fast"}), 10).widths
    assert not Space.around(TrainConfig(model="8C3-P2-D10"), 10).widths
    assert "model" not in Space.around(TrainConfig(model="8C3-P2-D10"), 10).changes(
        {"lr": 0.001, "weight_decay": 0.0, "augment": 1.0, "width": 2.0})


def test_augment_scales_the_asked_augmentation_or_the_base_one():
    assert augmentation(TrainConfig(), 0.5) | {} == {
        **{name: 0.0 for name in augmentation(TrainConfig(), 0.0)},
        "shift": 1.0, "rotate": 5.0, "zoom": 0.05}
    asked = TrainConfig(rotate=8.0, hue=0.3, crop_area=0.5)
    strong = augmentation(asked, 2.0)
    assert strong["rotate"] == 16.0 and strong["shift"] == 0.0
    assert strong["hue"] == 0.5            # within the setting's own bound
    assert strong["crop_area"] == 0.05     # smaller crops are stronger
    assert augmentation(asked, 0.0)["crop_area"] == 0.0  # off
    TrainConfig(**{**asked.to_dict(), **strong})  # every value is a valid setting


def test_a_trial_lr_is_rounded_to_what_the_command_says():
    space = Space.around(TrainConfig(), 10)
    changes = space.changes({"lr": 0.0012345678, "weight_decay": 1e-4, "augment": 1.0,
                             "width": 1.0})
    assert changes["lr"] == 0.00123 and "model" not in changes


@pytest.mark.parametrize("settings", [
    {"model": "8C3-P2-D10", "limit_train": 500, "val_split": 0.02, "seed": 1, "epochs": 3,
     "lr": 0.000444, "hflip": True, "grayscale": False},
    {"preset": "photo", "dataset": "folder:/nowhere", "seed": 4, "epochs": 7},
    {"preset": "fast", "seed": 0, "time_budget": 30, "weight_decay": 1e-3},
])
def test_the_command_rebuilds_the_trial_config_exactly(settings):
    config = training_config(settings).replace(time_budget=None, out="/runs/x")
    command = reproducing_command(config)
    assert command.startswith("tfcnn train ") and "--out" not in command
    rebuilt = training_config(reproducing_settings(config))
    assert rebuilt == config.replace(out=None)
    # The words parse back through the real parser to the same settings.
    from tfcnn.cli_flags import config_from_args
    from tfcnn.cli_parser import build_parser

    args = build_parser().parse_args(shlex.split(command)[1:])
    assert config_from_args(args) == config.replace(out=None)


@pytest.mark.parametrize("keywords, message", [
    ({"max_trials": 0, "time_budget": "20s"}, "max_trials: expected a positive integer"),
    ({"max_trials": 2, "time_budget": "none"}, "the search needs a budget"),
    ({"max_trials": 2, "time_budget": "20s", "method": "grid"},
     "method: expected one of bayesian, hyperband"),
    ({"max_trials": 2, "time_budget": "20s", "lr": -1}, "lr: expected a positive number"),
])
def test_bad_search_settings_are_refused_before_any_trial(tmp_path, keywords, message):
    with pytest.raises(ConfigError, match=message):
        tune_module.tune(out=tmp_path / "search", model="8C3-P2-D10", **keywords)
    assert not (tmp_path / "search").exists()


def test_missing_keras_tuner_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tune_module, "find_spec", lambda name: None)
    code = main(["tune", "--max-trials", "2", "--time-budget", "20s",
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == 'tfcnn: error: tune needs Keras Tuner: pip install "tfcnn[tune]"'


@pytest.mark.parametrize("flags, message", [
    (["--max-trials", "0"], "--max-trials: expected a positive integer, got 0"),
    (["--max-trials", "2", "--time-budget", "5x"], "--time-budget '5x': expected a duration"),
    (["--max-trials", "2", "--method", "grid"], "invalid choice: 'grid'"),
])
def test_cli_bad_values_get_one_line(tmp_path, capsys, flags, message):
    argv = ["tune", "--out", str(tmp_path / "s"), *flags]
    if "--time-budget" not in flags:
        argv += ["--time-budget", "20s"]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own refusal
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err.splitlines()[-1]


@pytest.mark.slow
def test_a_tiny_search_writes_trials_results_and_the_command(shared_datasets_dir, tmp_path,
                                                             capsys):
    out = tmp_path / "search"
    argv = ["tune", "--model", "8C3-P2-D10", "--limit-train", "500", "--limit-test", "200",
            "--val-split", "0.02", "--epochs", "2", "--seed", "1",
            "--data-dir", str(shared_datasets_dir),
            "--max-trials", "2", "--time-budget", "40s", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / "trial-001" / "model.keras").is_file()
    assert (out / "trial-002" / "model.keras").is_file()
    assert (out / "tuner" / "oracle.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert [t["trial"] for t in results["trials"]] == [1, 2]
    assert all(t["status"] == "COMPLETED" and t["epochs"] == 2 for t in results["trials"])
    best = results["best"]
    assert best["score"] == min(t["score"] for t in results["trials"])
    assert set(best["hyperparameters"]) == {"lr", "weight_decay", "augment"}
    command = results["command"]
    assert command == best["command"] and command.startswith("tfcnn train ")
    assert f"Train it again with: {command}" in printed.splitlines()
    # The command trains the best trial's very settings (its planned epochs, no budget).
    trial_config = json.loads((out / f"trial-{best['trial']:03d}" / "config.json").read_text())
    rebuilt = training_config(reproducing_settings(
        TrainConfig.from_dict({k: v for k, v in trial_config.items() if k != "versions"})
        .replace(time_budget=None)))
    assert f"--lr {rebuilt.lr!r}" in command and rebuilt.seed == 1 and rebuilt.epochs == 2
    assert rebuilt.lr == best["hyperparameters"]["lr"]
    # The same command again continues the search: nothing more to run, the same results.
    assert main(argv) == 0
    capsys.readouterr()
    assert json.loads((out / "results.json").read_text())["trials"] == results["trials"]
    # Other settings on the same folder are refused.
    assert main([*argv[:-2], "--out", str(out), "--lr", "0.01"]) == 2
    assert "holds a search with other settings (--lr" in capsys.readouterr().err
