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

from tfcnn import __version__
from tfcnn.config import TrainConfig
from tfcnn.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    ConfigError,
    TfcnnError,
    TrainingInterrupted,
)

_DEFAULTS = TrainConfig()
# Settings a resumed run may change; the rest come from the run's config.json.
_RESUMABLE_OVERRIDES = ("epochs", "data_dir", "steps_per_call")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", help="train a model (defaults reproduce the tutorial)",
        description="Train a CNN with a custom tf.GradientTape loop. With no options this is "
                    "the tutorial's run: MNIST, its network, Adam, batch 32, 5 epochs.")
    p.add_argument("--preset", help="a measured recipe whose settings fill in the flags not "
                                    "given: tutorial (the defaults) or fast")
    p.add_argument("--dataset", help=f"mnist, fashion_mnist, or folder:PATH (one sub-folder "
                                     f"of images per class) (default {_DEFAULTS.dataset})")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with mnist/ and fashion_mnist/ (or the four IDX files); "
                        "default: $TFCNN_DATA_DIR, then caches, then download")
    p.add_argument("--model", help=f"preset name or layer notation such as "
                                   f"'32C3-P2-D128-D10' (default {_DEFAULTS.model})")
    p.add_argument("--epochs", type=int, help=f"passes over the training set "
                                              f"(default {_DEFAULTS.epochs})")
    p.add_argument("--batch-size", type=int,
                   help=f"images per training step (default {_DEFAULTS.batch_size})")
    p.add_argument("--lr", type=float, help=f"Adam (peak) learning rate (default {_DEFAULTS.lr})")
    p.add_argument("--schedule", choices=("constant", "onecycle"),
                   help="learning rate schedule: constant, or onecycle (linear warm-up to --lr, "
                        "then cosine decay to 0) (default constant)")
    p.add_argument("--warmup", type=float, metavar="F",
                   help=f"onecycle: fraction of the steps spent warming up "
                        f"(default {_DEFAULTS.warmup})")
    p.add_argument("--seed", type=int, help="random seed; the same seed gives the same run "
                                            "(default: a random one, recorded in config.json)")
    p.add_argument("--shuffle-buffer", type=int, metavar="N",
                   help="shuffle buffer in images (default: a quarter of the training set)")
    p.add_argument("--eval-batch-size", type=int, metavar="N",
                   help=f"images per test step (default {_DEFAULTS.eval_batch_size})")
    p.add_argument("--limit-train", type=int, metavar="N",
                   help="use only the first N training images (quick checks)")
    p.add_argument("--limit-test", type=int, metavar="N",
                   help="use only the first N test images")
    p.add_argument("--steps-per-call", type=int, metavar="N",
                   help=f"training steps per compiled call; only speed changes "
                        f"(default {_DEFAULTS.steps_per_call})")
    p.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi-worker"),
                   help="tf.distribute strategy: default (one device), mirrored (local GPUs), "
                        "multi-worker (TF_CONFIG), auto (picks one) (default auto)")
    p.add_argument("--out", metavar="DIR",
                   help="run directory (default runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last checkpoint "
                        "(--epochs may raise the target)")
    p.add_argument("--quiet", action="store_true", help="print only the run directory")
    folder = p.add_argument_group("image-folder datasets (--dataset folder:PATH)")
    folder.add_argument("--image-size", metavar="N|HxW",
                        help="resize every image to N x N or H x W (default 28)")
    colour = folder.add_mutually_exclusive_group()
    colour.add_argument("--grayscale", dest="grayscale", action="store_const", const=True,
                        help="one channel (default)")
    colour.add_argument("--rgb", dest="grayscale", action="store_const", const=False,
                        help="three colour channels")
    folder.add_argument("--val-split", type=float, metavar="F",
                        help="fraction of each class held out for testing, seeded "
                             "(default 0.1)")


def _add_use_parsers(commands: argparse._SubParsersAction) -> None:
    source_help = "a run directory (its model.keras) or a .keras model file"
    p = commands.add_parser("evaluate", help="test metrics, per-class table, confusion plots",
                            description="Evaluate a trained model on its dataset's test set and "
                                        "write a report (tables and PNG plots).")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("--preset", help="a measured recipe whose settings fill in the flags not "
                                    "given: tutorial (the defaults) or fast")
    p.add_argument("--dataset", help="mnist, fashion_mnist or folder:PATH to evaluate on "
                                     "(default: the model's own)")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (as for train)")
    p.add_argument("--out", metavar="DIR", help="report folder (default RUN_DIR/report)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = commands.add_parser("predict", help="classify image files, folders or glob patterns",
                            description="Predict the class of each image. Digit models get "
                                        "MNIST-style preprocessing (invert, crop, centre).")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders or globs")
    p.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="how many of the most likely classes to list (default 3)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print a JSON list")
    form.add_argument("--csv", action="store_true", help="print CSV rows")
    p.add_argument("--no-preprocess", action="store_true",
                   help="only resize to the model's input (no inversion, crop or centring)")

    p = commands.add_parser("serve", help="web page to draw a digit, and HTTP prediction APIs",
                            description="Serve a model over HTTP: a drawing page at /, the "
                                        "TensorFlow Serving REST API (/v1), the Open Inference "
                                        "Protocol v2 (/v2) and POST /predict for image uploads.")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--name", help="model name in the API paths (default: the run's name)")
    p.add_argument("--max-body-mb", type=float, default=10.0, metavar="MB",
                   help="largest request body accepted, in MiB (default 10; larger: 413)")
    p.add_argument("--batch-window-ms", type=float, default=2.0, metavar="MS",
                   help="how long a batch waits for more concurrent requests (default 2)")

    p = commands.add_parser("export", help="export a model: keras, saved_model or tflite",
                            description="Write the model in a deployable format. The exported "
                                        "model outputs class probabilities.")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("--format", required=True, choices=("keras", "saved_model", "tflite"))
    p.add_argument("--quantize", default="none", choices=("none", "dynamic", "float16"),
                   help="TFLite weight quantization (default none)")
    p.add_argument("--out", required=True, metavar="PATH", help="file or folder to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfcnn", description="Train, evaluate and serve CNN image classifiers "
                                  "(TensorFlow 2 / Keras 3).")
    parser.add_argument("--version", action="version", version=f"tfcnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_use_parsers(commands)
    doctor = commands.add_parser("doctor", help="check the TensorFlow install, devices and data",
                                 description="Report TensorFlow and Keras versions, GPUs, CPU "
                                             "threads and where each dataset would load from.")
    doctor.add_argument("--data-dir", metavar="DIR", help="data folder to check as well")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    # Every TrainConfig field has a flag of the same name; unset flags are None.
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if args.resume is None:
        from tfcnn.presets import config_from_preset

        return config_from_preset(given.pop("preset", None), given)
    from tfcnn.train.rundir import RunDir, read_config

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
        print(f"Model: {info.model_name} ({info.parameters:,} parameters); "
              f"Adam lr {c.lr}, batch {c.batch_size}, {c.epochs} epochs, seed {c.seed}")
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
        test = (f"test loss {r['test_loss']:.4f}, test accuracy {100 * r['test_accuracy']:.2f}%"
                if r["test_loss"] is not None else "no test images")
        print(f"Epoch {r['epoch']}/{self.epochs}: loss {r['loss']:.4f}, "
              f"accuracy {100 * r['accuracy']:.2f}%, {test} "
              f"({r['seconds']:.1f} s, {r['images_per_second']:,.0f} images/s)", flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from tfcnn.data.source import check_dataset_setting
    from tfcnn.models.notation import resolve_model

    config = _config_from_args(args)
    # Fail fast on names, before TensorFlow takes seconds to load.
    model_name, _ = resolve_model(config.model)
    check_dataset_setting(config)
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise ConfigError(f"--data-dir {config.data_dir}: no such directory")
    started = time.perf_counter()

    from tfcnn.tfenv import import_tensorflow
    from tfcnn.train.strategy import create_distribution

    # First: a multi-worker strategy must be created before TensorFlow sets up its devices.
    distribution = create_distribution(config.strategy)
    import_tensorflow()
    from tfcnn.train.loop import Hooks
    from tfcnn.train.run import train_run
    from tfcnn.train.rundir import default_run_path

    if args.resume:
        run_path = Path(args.resume)
    else:
        run_path = Path(config.out) if config.out else default_run_path(config, model_name)
    printer = _Printer(config.epochs, args.quiet)
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


# The keys of `tfcnn evaluate --json`, a format that tools read.
EVALUATE_JSON_KEYS = ("test_accuracy", "test_loss", "per_class", "confusion_matrix")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tfcnn.tfenv import import_tensorflow
    from tfcnn.train.rundir import resolve_model_file

    model_file = resolve_model_file(args.source)
    if args.dataset is not None:  # a typo should not wait for TensorFlow to load
        from tfcnn.data.source import check_dataset_setting

        check_dataset_setting(TrainConfig(dataset=args.dataset))
    import_tensorflow()
    from tfcnn.evaluate import evaluate_model, format_evaluation

    report = evaluate_model(model_file, dataset=args.dataset, data_dir=args.data_dir,
                            out_dir=Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps({key: report[key] for key in EVALUATE_JSON_KEYS}))
    else:
        print(format_evaluation(report))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tfcnn.predict import expand_inputs, format_csv, format_table, predict_files
    from tfcnn.tfenv import import_tensorflow
    from tfcnn.train.rundir import resolve_model_file

    if args.top_k < 1:
        raise ConfigError(f"--top-k: expected a positive integer, got {args.top_k}")
    model_file = resolve_model_file(args.source)
    paths = expand_inputs(args.paths)
    import_tensorflow()
    results = predict_files(model_file, paths, top_k=args.top_k,
                            preprocess=not args.no_preprocess)
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        print(format_csv(results), end="")
    else:
        print(format_table(results))
    return EXIT_PARTIAL if any("error" in r for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tfcnn.tfenv import import_tensorflow
    from tfcnn.train.rundir import resolve_model_file

    model_file = resolve_model_file(args.source)
    import_tensorflow()
    from tfcnn.export import export_model

    result = export_model(model_file, args.format, args.quantize, Path(args.out))
    print(f"Exported {result['format']} ({result['quantize']}) to {result['path']}: "
          f"{result['bytes']:,} bytes")
    print(f"Class names: {result['labels']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tfcnn.tfenv import import_tensorflow
    from tfcnn.train.rundir import resolve_model_file

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
