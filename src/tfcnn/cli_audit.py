"""`tfcnn audit`: find wrong labels, duplicates, leaks and odd images; apply or undo fixes.

    tfcnn audit --dataset DATASET [--folds K] [--time-budget DURATION] [--out DIR] [--json]
                [--write-fixes FILE.csv]
    tfcnn audit --apply FILE.csv [--log LOG]
    tfcnn audit --undo LOG

`add_parser` declares the command (no TensorFlow imported); `run` executes it through
`tfcnn.audit` (the audit) or `tfcnn.audit.fixes` (--apply, --undo: no TensorFlow).
`--json` prints `AuditReport.to_json()` on stdout and the progress lines on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfcnn.core.errors import ConfigError

DEFAULT_FOLDS = 5


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `audit` command to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "audit", help="find wrong labels, duplicates, train/test leaks and odd images",
        description="Audit a dataset: K-fold cross-training gives every image probabilities "
                    "from a model that never saw its label; cleanlab lists the labels they "
                    "contradict. Also exact and near duplicates, copies shared by train and "
                    "test, class balance, unreadable and odd images. Writes a report folder "
                    "(audit.json, summary.txt, image grids). --write-fixes writes a CSV to "
                    "edit; --apply moves the files it says into their class folders, "
                    "--undo moves them back. See docs/audit.md.",
        allow_abbrev=False)
    p.add_argument("--dataset", help="folder:PATH (one sub-folder per class, or train/ and "
                                     "test/ of them) or a registered dataset (mnist, ...)")
    p.add_argument("--folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                   help=f"cross-training folds, 2-20 (default {DEFAULT_FOLDS})")
    p.add_argument("--time-budget", metavar="DURATION", default=None,
                   help="limit of the cross-training: 90s, 5m, 1h, or none (default 3m); "
                        "epochs per fold are planned from the first fold's measured speed")
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default runs/audit-<dataset>-<time>)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--write-fixes", metavar="FILE.csv",
                   help="also write the findings as a CSV to edit (action keep, move or "
                        "set-aside), for --apply")
    p.add_argument("--apply", metavar="FILE.csv",
                   help="move the files the edited CSV says to (folder: datasets only); "
                        "writes an undo log")
    p.add_argument("--log", metavar="LOG",
                   help="with --apply: the undo log to write (default FILE.undo.jsonl)")
    p.add_argument("--undo", metavar="LOG", help="move back the files an --apply moved")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (as for train)")
    p.add_argument("--image-size", metavar="N|HxW",
                   help="folder datasets: decode images to this size (default 28)")
    p.add_argument("--rgb", action="store_true", help="folder datasets: colour (default grey)")
    p.add_argument("--seed", type=int, default=0, help="folds and fold models (default 0)")
    p.add_argument("--model", metavar="NOTATION",
                   help="the fold network (default: the fast preset's for grey images, a "
                        "small batch-norm one for --rgb)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="the most epochs a fold trains (default 12; the budget may give fewer)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="images per training step of the folds (default 128)")
    return p


_AUDIT_ONLY = ("folds", "time_budget", "out", "json", "write_fixes", "data_dir",
               "image_size", "rgb", "model", "epochs", "batch_size")


def _check_mode(args: argparse.Namespace) -> str:
    """Which of --dataset, --apply, --undo was asked for (exactly one)."""
    given = [flag for flag, value in (("--dataset", args.dataset), ("--apply", args.apply),
                                      ("--undo", args.undo)) if value is not None]
    if len(given) != 1:
        raise ConfigError("audit: expected one of --dataset DATASET, --apply FILE.csv or "
                          f"--undo LOG, got {' and '.join(given) if given else 'none'}")
    if args.log is not None and args.apply is None:
        raise ConfigError("--log: only with --apply")
    if given[0] == "--dataset":
        _check_fixes_path(args.write_fixes)
    else:
        defaults = {"folds": DEFAULT_FOLDS, "rgb": False, "json": False}
        extra = [name for name in _AUDIT_ONLY if getattr(args, name) != defaults.get(name)]
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ConfigError(f"{flags}: only with --dataset, not with {given[0]}")
    return given[0]


def _check_fixes_path(path: str | None) -> None:
    """Refuse a --write-fixes path that cannot be written, before the audit's minutes."""
    from pathlib import Path

    if path is not None and not Path(path).absolute().parent.is_dir():
        raise ConfigError(f"--write-fixes {path}: no such folder "
                          f"{Path(path).absolute().parent}")


def _apply(args: argparse.Namespace) -> int:
    from tfcnn.audit.fixes import apply_fixes

    done = apply_fixes(args.apply, args.log)
    if done.log is None:
        print(f"{args.apply}: nothing to move ({done.kept} rows say keep)")
    else:
        print(f"moved {done.moved} file(s); {done.kept} row(s) kept; undo log {done.log}")
        print(f"undo with: tfcnn audit --undo {done.log}")
    return 0


def _undo(args: argparse.Namespace) -> int:
    from tfcnn.audit.fixes import undo_fixes

    count = undo_fixes(args.undo)
    print(f"moved {count} file(s) back to where they were")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `tfcnn audit`; prints the summary (or the JSON object)."""
    mode = _check_mode(args)
    if mode == "--apply":
        return _apply(args)
    if mode == "--undo":
        return _undo(args)
    import tfcnn.audit as audit_package
    from tfcnn.audit.budget import DEFAULT_BUDGET

    def progress(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = audit_package.audit(
        args.dataset, data_dir=args.data_dir, folds=args.folds,
        time_budget=args.time_budget if args.time_budget is not None else DEFAULT_BUDGET,
        out=args.out, image_size=args.image_size, rgb=args.rgb, seed=args.seed,
        model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        progress=progress)
    fixes = report.write_fixes(args.write_fixes) if args.write_fixes else None
    if args.json:
        print(json.dumps({**report.to_json(), "fixes": str(fixes) if fixes else None}))
    else:
        print(report.summary())
        if fixes:
            print(f"Fixes to edit: {fixes} (then: tfcnn audit --apply {fixes})")
    return 0
