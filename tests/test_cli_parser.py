"""The parser: train flags made from the settings schema, no abbreviations, "did you mean",
and settings spelled as flags on the CLI but as keywords in the API. Nothing here trains."""

import argparse
import dataclasses

import pytest

from tfcnn.api.training import check_settings, training_config
from tfcnn.cli import _config_from_args, main
from tfcnn.cli_parser import Parser, add_train_flags, build_parser
from tfcnn.core.config import SETTINGS, TrainConfig
from tfcnn.core.errors import TfcnnError
from tfcnn.core.settings import GROUPS


def _commands() -> dict[str, argparse.ArgumentParser]:
    return build_parser().parse_known_args(["doctor"])[0].subcommands


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_trainconfig_field_has_a_train_flag_with_help_that_defaults_to_none():
    train = _commands()["train"]
    actions = _actions(train)
    for field in dataclasses.fields(TrainConfig):
        action = actions["--" + field.name.replace("_", "-")]
        assert action.dest == field.name and action.default is None
        assert action.help and "{default}" not in action.help, field.name
    assert vars(train.parse_args([])) == {**{name: None for name in SETTINGS},
                                          "resume": None, "quiet": False, "ensemble": None}


def test_flags_follow_their_settings_kind_and_the_help_keeps_its_groups():
    train = _commands()["train"]
    actions = _actions(train)
    assert actions["--epochs"].type is int and actions["--lr"].type is float
    assert actions["--schedule"].choices == ("constant", "onecycle", "cosine")
    assert actions["--hflip"].const is True and actions["--rgb"].const is False
    assert actions["--rgb"].dest == actions["--grayscale"].dest == "grayscale"
    assert actions["--weights"].metavar == "imagenet|none|PATH"
    text = train.format_help()
    for title in ("augmentation (random", "transfer learning (--model keras:NAME)",
                  "image-folder datasets (--dataset folder:PATH)"):
        assert title in text
    assert "--grayscale | --rgb" in text  # mutually exclusive
    assert "(default 5)" in text and "(default 0.001)" in text and "2-25% of" in text
    with pytest.raises(SystemExit):
        train.parse_args(["--grayscale", "--rgb"])


def test_flags_set_the_config_and_unset_ones_leave_the_preset_its_say():
    args = build_parser().parse_args(["train", "--preset", "fast", "--rgb", "--hflip",
                                      "--dataset", "folder:/x", "--epochs", "3"])
    config = _config_from_args(args)
    assert (config.grayscale, config.hflip, config.epochs) == (False, True, 3)
    assert (config.lr, config.batch_size) == (0.01, 256)  # the preset's, not the defaults'


def test_commands_can_add_only_some_groups_of_train_flags():
    parser = Parser(prog="tfcnn show")
    add_train_flags(parser, groups=("data", "folders", "augmentation"))
    args = vars(parser.parse_args(["--dataset", "mnist", "--shift", "2", "--rgb"]))
    assert set(args) == {n for n, s in SETTINGS.items()
                         if s.group in ("data", "folders", "augmentation")}
    assert (args["dataset"], args["shift"], args["grayscale"]) == ("mnist", 2.0, False)
    assert "--lr" not in _actions(parser)
    with pytest.raises(ValueError, match="unknown settings group"):
        add_train_flags(Parser(), groups=("augmentaton",))
    assert {s.group for s in SETTINGS.values()} <= set(GROUPS)


def test_a_prefix_of_a_flag_is_not_taken_for_it():
    args, unknown = build_parser().parse_known_args(["train", "--epoch", "2", "--limit-tr",
                                                     "5"])
    assert args.epochs is None and args.limit_train is None
    assert unknown == ["--epoch", "2", "--limit-tr", "5"]
    for name, command in _commands().items():
        assert command.allow_abbrev is False, name


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["train", "--epohcs", "2"], " (did you mean --epochs?)"),
    (["train", "--epoch=2"], " (did you mean --epochs?)"),
    (["train", "--batch_size", "8"], " (did you mean --batch-size?)"),
    (["predict", "run", "x.png", "--top_k", "2"], " (did you mean --top-k?)"),
    (["predict", "run", "x.png", "--bogus"], ""),
])
def test_a_typo_in_a_flag_gets_a_suggestion_from_its_commands_flags(argv, suggestion,
                                                                   capsys, tmp_path):
    small = ["--limit-train", "10", "--limit-test", "10", "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stopped:  # were a typo taken, it would train a moment
        main([*argv, *small] if argv[0] == "train" else argv)
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"tfcnn {argv[0]}: error: unrecognized arguments: ")
    assert last.endswith(suggestion) and ("did you mean" in last) == bool(suggestion)


# Bad settings that fail before TensorFlow loads, in the API and on the command line.
BAD_SETTINGS = [
    ({"lr": -1}, "lr: expected a positive number", ["--lr", "-1"]),
    ({"preset": "turbo"}, "preset 'turbo': unknown", ["--preset", "turbo"]),
    ({"model": "fast"}, "model 'fast': not a network but a training preset; use preset fast",
     ["--model", "fast"]),
    ({"model": "resnet"}, "model 'resnet': unknown network name", ["--model", "resnet"]),
    ({"image_size": "32"}, "image_size: only for image-folder datasets (dataset "
     "folder:PATH)", ["--image-size", "32"]),
    ({"grayscale": False}, "grayscale: only for image-folder", ["--rgb"]),
    ({"test_split": 0.2}, "test_split: only for image-folder", ["--test-split", "0.2"]),
    ({"weights": "imagenet"}, "weights: expected none for model", ["--weights", "imagenet"]),
    ({"dataset": "folder:/nonexistent/x"}, "(dataset folder:PATH needs a folder",
     ["--dataset", "folder:/nonexistent/x"]),
]


@pytest.mark.parametrize(("settings", "message", "flags"), BAD_SETTINGS)
def test_api_errors_name_keywords_and_never_a_flag(settings, message, flags):
    with pytest.raises(TfcnnError) as caught:
        check_settings(training_config(settings))
    assert message in str(caught.value) and "--" not in str(caught.value)


@pytest.mark.parametrize(("settings", "message", "flags"), BAD_SETTINGS)
def test_the_cli_names_the_same_settings_as_its_flags(settings, message, flags, capsys,
                                                     tmp_path):
    small = ["--epochs", "1", "--limit-train", "10", "--limit-test", "10", "--out",
             str(tmp_path / "run")]  # should a case ever pass, it trains for a moment only
    assert main(["train", *small, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfcnn: error: ") and err.count("\n") == 1
    assert flags[0] in err
