"""`tfcnn lr-find` and `tfcnn tune`: the learning-rate range test; a Keras Tuner search.

    tfcnn lr-find [train flags] --out DIR [--json] [--start-lr LR] [--end-lr LR] [--steps N]
    tfcnn tune [train flags] --max-trials N --time-budget DURATION --out DIR
               [--method bayesian|hyperband] [--val-split F]

`add_parsers` declares the commands (no TensorFlow imported); `HANDLERS` maps each
command name to the function that runs it (through `tfcnn.steer`). Both take the train
flags (cli_flags.py) for the run they are about; their `--out` is their own folder, and
tune's `--time-budget` is the whole search's (each trial gets its share as its own).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from tfcnn.cli_flags import add_train_flags, given_settings
from tfcnn.core.errors import ConfigError
from tfcnn.core.settings import GROUPS

DEFAULT_START_LR, DEFAULT_END_LR, DEFAULT_STEPS = 1e-7, 1.0, 100
# Every train flag but the run directory's --out (the command's own folder).
_TRAIN_GROUPS = [group for group in GROUPS if group != "output"]


def _add_lr_find(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lr-find", help="learning-rate range test: loss against a rising learning rate",
        description="Train the fresh network (the one tfcnn train would build for these "
                    "flags, its augmentation and precision) while the learning rate rises "
                    "exponentially from --start-lr to --end-lr, one batch a step; stop when "
                    "the loss diverges. Writes DIR/lr_find.png and DIR/lr_find.json and "
                    "prints the suggested rate (the rate at the lowest smoothed loss, / 10). "
                    "See docs/steering.md.")
    add_train_flags(p, _TRAIN_GROUPS)
    own = p.add_argument_group("lr-find")
    own.add_argument("--out", dest="find_out", required=True, metavar="DIR",
                     help="folder for lr_find.png and lr_find.json")
    own.add_argument("--start-lr", type=float, default=DEFAULT_START_LR, metavar="LR",
                     help=f"first learning rate (default {DEFAULT_START_LR:g})")
    own.add_argument("--end-lr", type=float, default=DEFAULT_END_LR, metavar="LR",
                     help=f"last learning rate (default {DEFAULT_END_LR:g})")
    own.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                     help=f"training steps (batches) from start to end (default "
                          f"{DEFAULT_STEPS})")
    own.add_argument("--json", action="store_true", help="print one JSON object")


def _add_tune(subparsers: argparse._SubParsersAction) -> None:
    # "resolve": train's --time-budget (one run's) gives way to the search's own.
    p = subparsers.add_parser(
        "tune", conflict_handler="resolve",
        help="hyperparameter search with Keras Tuner (each trial a run directory)",
        description="Search learning rate, weight decay, width (named networks and "
                    "presets) and augmentation strength around the run these train flags "
                    "describe, with Keras Tuner (Bayesian optimisation or Hyperband). Each "
                    "trial trains DIR/trial-NNN with its share of --time-budget and is "
                    "scored by its lowest validation loss (--val-split, default 0.1). "
                    "Writes DIR/results.json and prints the best trial's tfcnn train "
                    "command; the same command again continues the search. Needs "
                    'pip install "tfcnn[tune]". See docs/steering.md.')
    add_train_flags(p, _TRAIN_GROUPS)
    own = p.add_argument_group("tune")
    own.add_argument("--max-trials", type=int, required=True, metavar="N",
                     help="trials to run (in all, counting those of an earlier run)")
    own.add_argument("--time-budget", dest="search_budget", required=True,
                     metavar="DURATION",
                     help="the whole search's time (90s, 20m, 1h), shared by its trials")
    own.add_argument("--out", dest="search_out", required=True, metavar="DIR",
                     help="search folder: trial-001, ..., results.json, tuner/ (its state)")
    own.add_argument("--method", choices=("bayesian", "hyperband"), default="bayesian",
                     help="Keras Tuner oracle (default bayesian)")
    own.add_argument("--json", action="store_true",
                     help="print results.json's object instead of the table")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the CLI's subparsers."""
    _add_lr_find(subparsers)
    _add_tune(subparsers)


def run_lr_find(args: argparse.Namespace) -> int:
    """Run `tfcnn lr-find`; prints the suggested rate (or one JSON object)."""
    from tfcnn.steer.lr_find import lr_find

    found = lr_find(out=args.find_out, start_lr=args.start_lr, end_lr=args.end_lr,
                    steps=args.steps, **given_settings(args))
    if args.json:
        print(json.dumps(found.to_json()))
        return 0
    print(found.describe())
    print(f"Plot: {found.png}")
    print(f"suggested learning rate: {found.suggested_lr:g}  ({found.command})")
    return 0


def _progress(quiet: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)
    return say


def run_tune(args: argparse.Namespace) -> int:
    """Run `tfcnn tune`; prints a line per trial, the results table and the best command."""
    from tfcnn.steer.tune import tune

    if args.max_trials < 1:
        raise ConfigError(f"--max-trials: expected a positive integer, got {args.max_trials}")
    result = tune(max_trials=args.max_trials, time_budget=args.search_budget,
                  out=args.search_out, method=args.method, progress=_progress(args.json),
                  **given_settings(args))
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(result.table())
    if result.stopped:
        print(f"Stopped: {result.stopped}")
    print(f"Results: {result.out / 'results.json'}")
    if result.best is None:
        print("No trial finished: no best trial to report")
        return 0
    print(f"Best: trial {result.best.number}, validation loss {result.best.score:.4f} "
          f"({result.best.run})")
    print(f"Train it again with: {result.command}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "lr-find": run_lr_find, "tune": run_tune}
