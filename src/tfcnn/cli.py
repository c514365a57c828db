"""The `tfcnn` command line: argument parsing, dispatch and everything printed for the user.

Nothing here imports TensorFlow at module level: `tfcnn --help` and argument errors stay
instant, and each command imports what it needs when it runs. Library code raises
`TfcnnError`; `main` turns it into one line on stderr and its exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcnn import cli_audit, cli_explain, cli_steer, cli_trust, cli_tune
from tfcnn.cli_flags import config_from_args, unknown_flags_message
from tfcnn.cli_parser import build_parser
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    ConfigError,
    TfcnnError,
    TrainingInterrupted,
)
from tfcnn.core.spelling import flag as _flag  # the CLI spells settings as its flags
from tfcnn.core.spelling import speaking


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_from_args(args, args.resume)


class _Printer:
    """Progress bars and epoch lines for `tfcnn train`."""

    def __init__(self, epochs: int, quiet: bool) -> None:
        self.epochs, self.quiet = epochs, quiet

    def start(self, info: Any) -> None:
        if not info.chief and not self.quiet:  # multi-worker: only the chief reports progress
            print(f"Worker: {info.distribution}; the chief prints progress and writes "
                  f"{info.run_dir}", flush=True)
            self.quiet = True
        if self.quiet:
            return
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = f"{len(gpus)} GPU(s)" if gpus else "CPU (no GPU found)"
        c = info.config
        print(f"TensorFlow {tf.__version__} on {device}")
        kept = {"memory": "; decoded in memory", "disk": "; streamed from disk, cached in "
                f"{info.run_dir / 'cache'}", "stream": "; streamed from disk"}.get(info.cache, "")
        print(f"Data: {c.dataset} from {info.dataset_source} "
              f"({info.num_train:,} train, {info.num_test:,} test images{kept})")
        optimizer = f"AdamW (decay {c.weight_decay})" if c.weight_decay else "Adam"
        sized = f"; {info.head}" if info.head else ""
        epochs = info.plan or _epochs(c.epochs)
        self.epochs = c.epochs  # a time budget's plan may differ from the flags
        print(f"Model: {info.model_name} ({info.parameters:,} parameters{sized}); "
              f"{optimizer} lr {c.lr}, batch {c.batch_size}, {epochs}, seed {c.seed}")
        extras = [f"{c.schedule} schedule" if c.schedule != "constant" else "",
                  f"label smoothing {c.label_smoothing}" if c.label_smoothing else "",
                  f"weight average (EMA {c.ema})" if c.ema else "",
                  describe_augmentation(c),
                  f"{c.precision} precision" if c.precision != "float32" else "",
                  f"{c.class_weight} class weights" if c.class_weight else "",
                  f"early stop after {c.early_stop} epochs without a better validation loss"
                  if c.early_stop else "",
                  f"{c.weights} weights" if c.weights != "none" else "",
                  f"backbone frozen for {_epochs(c.freeze_epochs)}" if c.freeze_epochs else ""]
        if any(extras):
            print("Training: " + "; ".join(e for e in extras if e))
        if info.num_val:
            print(f"Validation: {info.num_val:,} training images held out (--val-split "
                  f"{c.val_split}); the best epoch is kept, the test set is used at the end")
        if info.distribution:
            print(f"Strategy: {info.distribution}")
        if info.skipped:
            first_file, reason = info.skipped[0]
            print(f"Skipped {len(info.skipped)} unreadable image(s), e.g. {first_file}: {reason}")
        if info.resumed_from:
            print(f"Resuming from {info.resumed_from}")
        if info.resume_note:
            print(info.resume_note)
        if info.cleaned:
            print(f"Removed {len(info.cleaned)} file(s) a killed save left: "
                  f"{', '.join(info.cleaned)}")
        sys.stdout.flush()

    def progress(self, epoch: int, steps: int, done: int) -> Any:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI, pipes).
        return tqdm(total=steps, initial=done, desc=f"Epoch {epoch}/{self.epochs}",
                    unit="step", leave=False, file=sys.stderr,
                    disable=True if self.quiet else None, dynamic_ncols=True)

    def note(self, line: str) -> None:
        if not self.quiet:
            print(f"Note: {line}", flush=True)

    def epoch_end(self, r: dict[str, Any]) -> None:
        if self.quiet:
            return
        if r.get("val_loss") is not None:
            test = (f"val loss {r['val_loss']:.4f}, "
                    f"val accuracy {100 * r['val_accuracy']:.2f}%")
        elif r.get("test_skipped"):
            test = "tested after the last epoch"
        elif r["test_loss"] is not None:
            test = (f"test loss {r['test_loss']:.4f}, "
                    f"test accuracy {100 * r['test_accuracy']:.2f}%")
        else:
            test = "no test images"
        print(f"Epoch {r['epoch']}/{self.epochs}: loss {r['loss']:.4f}, "
              f"accuracy {100 * r['accuracy']:.2f}%, {test} "
              f"({r['seconds']:.1f} s, {r['images_per_second']:,.0f} images/s)", flush=True)


def describe_augmentation(c: TrainConfig) -> str:
    parts = [f"shift {c.shift:g} px" if c.shift else "", f"rotate {c.rotate:g} deg" if c.rotate
             else "", f"zoom {c.zoom:g}" if c.zoom else "", "mirror" if c.hflip else "",
             f"erase p={c.erase:g}" if c.erase else "",
             f"elastic alpha {c.elastic:g} sigma {c.elastic_sigma:g}" if c.elastic else "",
             f"crop {c.crop_area:g}-1 of the area" if c.crop_area else "",
             *(f"{name} {getattr(c, name):g}" for name in ("brightness", "contrast",
                                                            "saturation", "hue", "mixup",
                                                            "cutmix") if getattr(c, name))]
    given = [p for p in parts if p]
    return f"augmentation: {', '.join(given)}" if given else ""


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def cmd_train(args: argparse.Namespace) -> int:
    from tfcnn.api.training import check_resumable, check_settings, start_training
    from tfcnn.core.rundir import RunFinished
    from tfcnn.training.ensemble import ensemble_size
    from tfcnn.training.hooks import Hooks

    ensemble = ensemble_size(args.ensemble, args.resume)  # None: one plain run
    config = _config_from_args(args)
    check_resumable(config, args.resume)  # a run trained on arrays resumes from Python only
    check_settings(config, ensemble, _flag)  # names fail fast, before TensorFlow takes seconds
    started = time.perf_counter()
    printer = _Printer(config.epochs, args.quiet)

    def say(line: str) -> None:
        if not printer.quiet:
            print(line, flush=True)

    hooks = Hooks(progress=printer.progress, epoch_end=printer.epoch_end, note=printer.note)
    try:
        result = start_training(config, resume=args.resume, hooks=hooks, on_start=printer.start,
                                on_member=say, ensemble=ensemble, name=_flag)
    except RunFinished as exc:
        raise RunFinished(exc.path, exc.done, exc.epochs, f"{_flag('epochs')} N",
                          exc.stopped) from None
    # From here the run is complete: a Ctrl-C while printing must not report a failure.
    try:
        if ensemble is not None and result.test_accuracy is not None:
            members = ", ".join(f"{100 * m['test_accuracy']:.2f}%" for m in result.members)
            say(f"Ensemble of {ensemble}: test accuracy {100 * result.test_accuracy:.2f}%, "
                f"test loss {result.test_loss:.4f} (members: {members})")
        elif ensemble is None:
            accuracy = (f"test accuracy {100 * result.test_accuracy:.2f}%, "
                        if result.test_accuracy is not None else "")
            say(f"Done: {accuracy}training {result.train_seconds:.1f} s, "
                f"total {time.perf_counter() - started:.1f} s")
        print(result.run_dir if printer.quiet else f"Run directory: {result.run_dir}",
              flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _report_dir(args: argparse.Namespace, models: list[Any]) -> Path:
    """Where `tfcnn evaluate` writes: --out, else beside the (first) model: report/ for its
    own test set (report-ensemble/, report-tta/ for ensembles and TTA), and with the data's
    name added for other data (report-folder-pets/), so the model's own report is kept."""
    from tfcnn.evaluation.ensemble import default_report_dir
    from tfcnn.evaluation.report import data_tag, is_own_dataset

    if args.out:
        return Path(args.out)
    out = default_report_dir(args.source[0], len(models), args.tta)
    if args.dataset is None or is_own_dataset(models[0], args.dataset):
        return out
    return out.with_name(f"{out.name}-{data_tag(args.dataset)}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tfcnn.api.classifier import Classifier, evaluate_models
    from tfcnn.training.ensemble import resolve_model_files

    model_files = resolve_model_files(args.source)
    if args.dataset is not None:  # a typo should not wait for TensorFlow to load
        from tfcnn.data.source import check_dataset_setting

        check_dataset_setting(TrainConfig(dataset=args.dataset))
    models = [Classifier.load(file) for file in model_files]
    report = evaluate_models(models, dataset=args.dataset, data_dir=args.data_dir,
                             tta=args.tta)
    report.save(_report_dir(args, models))
    print(json.dumps(report.to_dict()) if args.json else report.text())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tfcnn.api.classifier import load
    from tfcnn.predict import expand_inputs, expected_labels, format_csv, format_table

    if args.top_k < 1:
        raise ConfigError(f"--top-k: expected a positive integer, got {args.top_k}")
    skipped: list[Path] = []
    paths = expand_inputs(args.paths, skipped)
    classifier = load(args.source)
    results = classifier.predict_files(paths, top_k=args.top_k,
                                       preprocess=not args.no_preprocess, tta=args.tta,
                                       expected=expected_labels(args.paths, paths))
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        print(format_csv(results), end="")
    else:
        print(format_table(results, skipped))
    if skipped and (args.json or args.csv):
        print(f"tfcnn: skipped {len(skipped)} file(s) in the folders that are not named as "
              f"images, e.g. {skipped[0]}", file=sys.stderr)
    return EXIT_PARTIAL if any("error" in r for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tfcnn.api.classifier import load
    from tfcnn.export import check_export_target, labels_path
    from tfcnn.export.files import size_of

    check_export_target(args.format, args.quantize, Path(args.out), args.force)
    classifier = load(args.source)
    out = classifier.export(args.out, args.format, args.quantize, force=args.force)
    print(f"Exported {args.format} ({args.quantize}) to {out}: {size_of(out):,} bytes")
    print(f"Class names: {labels_path(out, args.format)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tfcnn.api.classifier import load
    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.serve.app import check_server_options, run_server
    from tfcnn.serve.model import check_name, default_name

    resolve_model_file(args.source)  # the model's path first, as every command checks it
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: expected 1 to 65535, got {args.port}")
    check_server_options(args.max_body_mb, args.batch_window_ms)
    if args.name is not None:
        check_name(args.name)
    classifier = load(args.source)  # a wrong path fails before TensorFlow loads
    run_server(classifier, host=args.host, port=args.port,
               name=args.name or default_name(classifier.path), max_body_mb=args.max_body_mb,
               batch_window_ms=args.batch_window_ms)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tfcnn.doctor import collect_report, format_report

    report = collect_report(args.data_dir)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["tensorflow"]["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # argparse would show the top-level usage; the command's own helps more
        command = args.subcommands[args.command]
        command.error(unknown_flags_message(command, unknown))
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "explain": cli_explain.run, "calibrate": cli_trust.run, "audit": cli_audit.run,
                "export": cmd_export, "serve": cmd_serve, "doctor": cmd_doctor,
                **cli_steer.HANDLERS, **cli_tune.HANDLERS}
    try:
        with speaking(_flag):  # library entry points spell settings as flags for the CLI
            return handlers[args.command](args)
    except TrainingInterrupted as exc:
        print(f"tfcnn: {exc}", file=sys.stderr)
        return exc.exit_code
    except TfcnnError as exc:
        print(f"tfcnn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tfcnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tfcnn runs --json | head`: the reader has gone, as for cat
        _silence_stdout()
        return EXIT_BROKEN_PIPE


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
