"""`tfcnn runs` and `tfcnn show`: compare run directories; look at the training batches.

    tfcnn runs [DIR] [--json] [--plot FILE.png]
    tfcnn show [--dataset ...] [--preset ...] [augmentation flags] --out FILE.png
               [--count N] [--seed S] [--batch-size N]

`add_parsers` declares the commands (no TensorFlow imported); `HANDLERS` maps each
command name to the function that runs it (through `tfcnn.steer`). `runs` never imports
TensorFlow; with `--json` stdout holds only the JSON list.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tfcnn.cli_flags import add_train_flags, config_from_args
from tfcnn.core.errors import ConfigError

SHOW_GROUPS = ("recipe", "data", "augmentation", "folders")


def _add_runs_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "runs", help="list and compare run directories: accuracy, epochs, time, CPU",
        description="List the run directories (config.json + metrics.json) under DIR and "
                    "its sub-folders (ensemble members, search trials), oldest first: "
                    "dataset, model, preset, epochs done/planned, test accuracy, training "
                    "seconds, CPU and the date metrics.json was last written. A run whose "
                    "files cannot be read is listed with the reason.")
    p.add_argument("directory", metavar="DIR", nargs="?", default="runs",
                   help="folder to search (default runs/)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects (path, test_accuracy, ...)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw the runs' test accuracy after each epoch on one figure")


def _add_show_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "show", help="a labelled grid of training images after augmentation",
        description="Draw the first training images a run with these settings would feed "
                    "its network, after the training step's own augmentation (same data "
                    "loading, shuffle and seeds), each titled with its class name. Look "
                    "before spending minutes training on them.")
    add_train_flags(p, groups=SHOW_GROUPS)
    p.add_argument("--out", dest="png", required=True, metavar="FILE.png",
                   help="the PNG to write")
    p.add_argument("--count", type=int, default=16, metavar="N",
                   help="how many images (default 16, at most 256)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="the run seed to show (shuffle and augmentation; default 0)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="training batch size (default: the preset's or 32); mixup and "
                        "cutmix pair images within a batch")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the CLI's subparsers."""
    _add_runs_parser(subparsers)
    _add_show_parser(subparsers)


def _png_path(text: str, option: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"{option} {text}: expected a file name ending in .png")
    if path.is_dir():
        raise ConfigError(f"{option} {text}: is a folder (expected a .png file name)")
    return path


def run_runs(args: argparse.Namespace) -> int:
    """Run `tfcnn runs`: the table (or JSON list), and the plot if asked for."""
    from tfcnn.steer.runs import format_table, plot_histories, runs

    plot = _png_path(args.plot, "--plot") if args.plot else None
    rows = runs(args.directory)
    if plot is not None:
        plot_histories(rows, plot)
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
    elif rows:
        print(format_table(rows))
    else:
        print(f"No runs under {args.directory} (a run directory holds config.json and "
              "metrics.json; tfcnn train writes them)")
    if plot is not None:
        print(f"Plot: {plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Run `tfcnn show`: write the grid and say what it holds."""
    from tfcnn.evaluation.plots import save_figure
    from tfcnn.steer.show import MAX_COUNT, augmented_batch, batch_figure, describe_settings

    out = _png_path(args.png, "--out")
    if not 1 <= args.count <= MAX_COUNT:
        raise ConfigError(f"--count: expected 1 to {MAX_COUNT}, got {args.count}")
    batch = augmented_batch(config_from_args(args), count=args.count)
    save_figure(batch_figure(batch), out)
    c = batch.config
    print(f"Wrote {out}: {len(batch.images)} training image(s) of {c.dataset}, seed {c.seed}, "
          f"augmentation: {describe_settings(c)}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"runs": run_runs,
                                                            "show": run_show}
