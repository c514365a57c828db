"""`tfcnn calibrate`: fit a trained model's temperature and its "unknown" rule afterwards.

`add_parser` declares the command (no TensorFlow imported); `run` executes it through
`Classifier.calibrate`, which stores the result in the model file.
"""

from __future__ import annotations

import argparse

from tfcnn.core.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `calibrate` command to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "calibrate", help="fit calibrated probabilities and the 'unknown' rule of a model",
        description="Fit the temperature that makes the model's probabilities honest (NLL "
                    "on held-out images) and the threshold above which an input is "
                    "'unknown' (unlike the training images), and store both in the model. "
                    "Uses the run's validation split, or --dataset images it did not train "
                    "on. Runs trained with --val-split are calibrated at the end already.",
        allow_abbrev=False)
    p.add_argument("source", metavar="RUN_DIR|MODEL",
                   help="a run directory (its model.keras) or a .keras model file")
    p.add_argument("--dataset", help="images to fit on: a registered dataset's test set, or "
                                     "folder:PATH (every image in it); default: the run's "
                                     "validation split")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (as for train)")
    p.add_argument("--acceptance", type=float, default=0.95, metavar="F",
                   help="share of in-distribution images the 'unknown' rule accepts "
                        "(default 0.95)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run `tfcnn calibrate`; prints what was fitted."""
    from tfcnn.api.classifier import load

    if not 0 < args.acceptance < 1:
        raise ConfigError(f"--acceptance: expected a fraction between 0 and 1, got "
                          f"{args.acceptance}")
    classifier = load(args.source)
    fitted = classifier.calibrate(args.dataset, args.data_dir, args.acceptance)
    print(f"{classifier.path}: {fitted}")
    if args.dataset is not None:
        print("Note: evaluate on other images than these: the calibration fits them")
    return 0
