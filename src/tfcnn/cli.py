"""The `tfcnn` command line: argument parsing, dispatch and everything printed for the user.

Nothing here imports TensorFlow at module level: `tfcnn --help` and argument errors stay
instant, and each command imports what it needs when it runs. Library code raises
`TfcnnError`; `main` turns it into one line on stderr and its exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcnn.cli_parser import build_parser
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    ConfigError,
    TfcnnError,
    TrainingInterrupted,
)

# Settings a resumed run may change; the rest come from the run's config.json.
_RESUMABLE_OVERRIDES = ("epochs", "data_dir", "steps_per_call")


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    # Every TrainConfig field has a flag of the same name; unset flags are None.
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if args.resume is None:
        from tfcnn.core.presets import config_from_preset

        return config_from_preset(given.pop("preset", None), given)
    from tfcnn.core.rundir import RunDir, read_config

    refused = sorted(set(given) - set(_RESUMABLE_OVERRIDES))
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ConfigError(f"{flags}: not allowed with --resume (settings come from "
                          f"{Path(args.resume) / 'config.json'}; only --epochs, --data-dir "
                          "and --steps-per-call may change)")
    return read_config(RunDir(Path(args.resume))).replace(**given)


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
        print(f"Data: {c.dataset} from {info.dataset_source} "
              f"({info.num_train:,} train, {info.num_test:,} test images)")
        optimizer = f"AdamW (decay {c.weight_decay})" if c.weight_decay else "Adam"
        print(f"Model: {info.model_name} ({info.parameters:,} parameters); "
              f"{optimizer} lr {c.lr}, batch {c.batch_size}, {c.epochs} epochs, seed {c.seed}")
        extras = [f"{c.schedule} schedule" if c.schedule != "constant" else "",
                  f"label smoothing {c.label_smoothing}" if c.label_smoothing else "",
                  f"weight average (EMA {c.ema})" if c.ema else "",
                  describe_augmentation(c),
                  f"{c.precision} precision" if c.precision != "float32" else ""]
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
        sys.stdout.flush()

    def progress(self, epoch: int, steps: int, done: int) -> Any:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI, pipes).
        return tqdm(total=steps, initial=done, desc=f"Epoch {epoch}/{self.epochs}",
                    unit="step", leave=False, file=sys.stderr,
                    disable=True if self.quiet else None, dynamic_ncols=True)

    def epoch_end(self, r: dict[str, Any]) -> None:
        if self.quiet:
            return
        if r.get("val_loss") is not None:
            test = (f"val loss {r['val_loss']:.4f}, "
                    f"val accuracy {100 * r['val_accuracy']:.2f}%")
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
             f"elastic alpha {c.elastic:g} sigma {c.elastic_sigma:g}" if c.elastic else ""]
    given = [p for p in parts if p]
    return f"augmentation: {', '.join(given)}" if given else ""


def cmd_train(args: argparse.Namespace) -> int:
    from tfcnn.data.source import check_dataset_setting
    from tfcnn.models.notation import resolve_model
    from tfcnn.training.ensemble import check_ensemble, ensemble_size

    ensemble = ensemble_size(args.ensemble, args.resume)  # None: one plain run
    config = _config_from_args(args)
    # Fail fast on names, before TensorFlow takes seconds to load.
    model_name, _ = resolve_model(config.model)
    if ensemble is not None:
        check_ensemble(ensemble, config)
        model_name = f"{model_name}-ensemble{ensemble}"  # in the default run directory's name
    check_dataset_setting(config)
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise ConfigError(f"--data-dir {config.data_dir}: no such directory")
    started = time.perf_counter()

    from tfcnn.core.tfenv import import_tensorflow
    from tfcnn.training.strategy import create_distribution

    # First: a multi-worker strategy must be created before TensorFlow sets up its devices.
    distribution = create_distribution(config.strategy)
    import_tensorflow()
    from tfcnn.core.rundir import default_run_path
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    if args.resume:
        run_path = Path(args.resume)
    else:
        run_path = Path(config.out) if config.out else default_run_path(config, model_name)
    printer = _Printer(config.epochs, args.quiet)
    if ensemble is not None:
        return _train_ensemble(config, run_path, ensemble, args.resume is not None, printer,
                               distribution)
    result = train_run(config, run_path, Hooks(printer.progress, printer.epoch_end),
                       resume=args.resume is not None, on_start=printer.start,
                       distribution=distribution)
    if not printer.quiet:
        accuracy = (f"test accuracy {100 * result.test_accuracy:.2f}%, "
                    if result.test_accuracy is not None else "")
        print(f"Done: {accuracy}training {result.train_seconds:.1f} s, "
              f"total {time.perf_counter() - started:.1f} s")
    print(f"Run directory: {result.run_dir}")
    return 0


def _train_ensemble(config: TrainConfig, run_path: Path, size: int, resume: bool,
                    printer: _Printer, distribution: Any) -> int:
    from tfcnn.training.ensemble import train_ensemble
    from tfcnn.training.loop import Hooks

    def say(line: str) -> None:
        if not printer.quiet:
            print(line, flush=True)

    result = train_ensemble(config, run_path, size, Hooks(printer.progress, printer.epoch_end),
                            resume=resume, on_start=printer.start, on_member=say,
                            distribution=distribution)
    if result.test_accuracy is not None:
        members = ", ".join(f"{100 * m['test_accuracy']:.2f}%" for m in result.members)
        say(f"Ensemble of {size}: test accuracy {100 * result.test_accuracy:.2f}%, "
            f"test loss {result.test_loss:.4f} (members: {members})")
    print(f"Run directory: {result.run_dir}")
    return 0


# The keys of `tfcnn evaluate --json`, a format that tools read.
EVALUATE_JSON_KEYS = ("test_accuracy", "test_loss", "per_class", "confusion_matrix")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tfcnn.core.tfenv import import_tensorflow
    from tfcnn.training.ensemble import resolve_model_files

    model_files = resolve_model_files(args.source)
    if args.dataset is not None:  # a typo should not wait for TensorFlow to load
        from tfcnn.data.source import check_dataset_setting

        check_dataset_setting(TrainConfig(dataset=args.dataset))
    import_tensorflow()
    if len(model_files) == 1 and not args.tta:  # one model: the plain report
        from tfcnn.evaluation.report import evaluate_model, format_evaluation

        report = evaluate_model(model_files[0], dataset=args.dataset, data_dir=args.data_dir,
                                out_dir=Path(args.out) if args.out else None)
        keys, text = EVALUATE_JSON_KEYS, format_evaluation
    else:
        from tfcnn.evaluation import ensemble as ens

        out = (Path(args.out) if args.out
               else ens.default_report_dir(args.source[0], len(model_files), args.tta))
        report = ens.evaluate_ensemble(model_files, out_dir=out, dataset=args.dataset,
                                       data_dir=args.data_dir, tta=args.tta)
        keys, text = (*EVALUATE_JSON_KEYS, *ens.JSON_KEYS), ens.format_ensemble
    print(json.dumps({key: report[key] for key in keys}) if args.json else text(report))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.core.tfenv import import_tensorflow
    from tfcnn.predict import expand_inputs, format_csv, format_table, predict_files

    if args.top_k < 1:
        raise ConfigError(f"--top-k: expected a positive integer, got {args.top_k}")
    model_file = resolve_model_file(args.source)
    paths = expand_inputs(args.paths)
    import_tensorflow()
    results = predict_files(model_file, paths, top_k=args.top_k,
                            preprocess=not args.no_preprocess, tta=args.tta)
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        print(format_csv(results), end="")
    else:
        print(format_table(results))
    return EXIT_PARTIAL if any("error" in r for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.core.tfenv import import_tensorflow

    model_file = resolve_model_file(args.source)
    import_tensorflow()
    from tfcnn.export import export_model

    result = export_model(model_file, args.format, args.quantize, Path(args.out))
    print(f"Exported {result['format']} ({result['quantize']}) to {result['path']}: "
          f"{result['bytes']:,} bytes")
    print(f"Class names: {result['labels']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.core.tfenv import import_tensorflow

    model_file = resolve_model_file(args.source)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: expected 1 to 65535, got {args.port}")
    import_tensorflow()
    from tfcnn.serve.app import run_server

    run_server(model_file, host=args.host, port=args.port, name=args.name,
               max_body_mb=args.max_body_mb, batch_window_ms=args.batch_window_ms)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tfcnn.doctor import collect_report, format_report

    report = collect_report(args.data_dir)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["tensorflow"]["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "export": cmd_export, "serve": cmd_serve, "doctor": cmd_doctor}
    try:
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
