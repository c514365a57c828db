"""The `tfcnn` argument parser: every command, flag and help text (no TensorFlow here).

Train flags are made from the `TrainConfig` schema (core/config.py, core/settings.py):
each field has one flag of its name (`--batch-size` sets `batch_size`), with the field's
help text and CLI group; flags left out are None, so that a preset's value or the config
default applies. No parser takes abbreviations (`--epoch` is not `--epochs`).
"""

from __future__ import annotations

import argparse

from tfcnn import __version__, cli_audit, cli_explain, cli_steer, cli_trust, cli_tune
from tfcnn.cli_flags import Parser, add_train_flags, unknown_flags_message

__all__ = ["Parser", "add_train_flags", "build_parser", "unknown_flags_message"]


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", help="train a model (defaults reproduce the tutorial)",
        description="Train a CNN with a custom tf.GradientTape loop. With no options this is "
                    "the tutorial's run: MNIST, its network, Adam, batch 32, 5 epochs.")
    add_train_flags(p)
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last checkpoint "
                        "(--epochs may raise the target)")
    p.add_argument("--quiet", action="store_true", help="print only the run directory")
    p.add_argument("--ensemble", type=int, metavar="N",
                   help="train N models (seeds SEED, SEED+1, ...) into DIR/member-1..N and "
                        "report their averaged test accuracy in DIR/ensemble.json; "
                        "--resume DIR continues an ensemble")


def _add_use_parsers(commands: argparse._SubParsersAction) -> None:
    source_help = "a run directory (its model.keras) or a .keras model file"
    p = commands.add_parser("evaluate", help="test metrics, per-class table, confusion plots",
                            description="Evaluate a trained model, or the ensemble of several, "
                                        "on its dataset's test set and write a report (tables "
                                        "and PNG plots).")
    p.add_argument("source", metavar="RUN_DIR|MODEL", nargs="+",
                   help=source_help + "; several (or an ensemble directory of tfcnn train "
                                      "--ensemble): their ensemble, class probabilities averaged")
    p.add_argument("--dataset", help="mnist, fashion_mnist or folder:PATH to evaluate on "
                                     "(default: the model's own)")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (as for train)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average each model's probabilities over the "
                        "image and its copies shifted by 1 pixel up, down, left and right")
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default RUN_DIR/report; for an ensemble or --tta, "
                        "report-ensemble, report-tta or report-ensemble-tta in the first "
                        "RUN_DIR, beside the single model's report)")
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
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the probabilities over the image and "
                        "its copies shifted by 1 pixel up, down, left and right")

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
                   help="kept for compatibility, no longer waits: a lone request runs at "
                        "once, and requests that arrive while the model runs make the next "
                        "batch (at most 64 images)")

    p = commands.add_parser("export", help="export a model: saved_model, tflite, onnx or keras",
                            description="Write the model in a deployable format that answers "
                                        "raw images as tfcnn predict does (its preprocessing "
                                        "and calibration inside): class probabilities.")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("--format", required=True, choices=("keras", "saved_model", "tflite", "onnx"),
                   help="saved_model: signatures serving_default (float images), serving_bytes "
                        "(encoded image files) and serving_uint8 (uint8 images of any size); "
                        "tflite and onnx: uint8 images at the model's size; keras: a plain "
                        "Keras file (float images)")
    p.add_argument("--quantize", default="none", choices=("none", "dynamic", "float16"),
                   help="TFLite weight quantization (default none)")
    p.add_argument("--out", required=True, metavar="PATH", help="file or folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tfcnn", description="Train, evaluate and serve CNN image classifiers "
                                  "(TensorFlow 2 / Keras 3).")
    parser.add_argument("--version", action="version", version=f"tfcnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_use_parsers(commands)
    cli_explain.add_parser(commands)
    cli_trust.add_parser(commands)
    cli_audit.add_parser(commands)
    cli_steer.add_parsers(commands)
    cli_tune.add_parsers(commands)
    doctor = commands.add_parser("doctor", help="check the TensorFlow install, devices and data",
                                 description="Report TensorFlow and Keras versions, GPUs, CPU "
                                             "threads and where each dataset would load from.")
    doctor.add_argument("--data-dir", metavar="DIR", help="data folder to check as well")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    # main() reports an unknown flag with its own command's usage, not the top-level one.
    parser.set_defaults(subcommands=commands.choices)
    return parser
