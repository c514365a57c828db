"""The `tfcnn` argument parser: every command, flag and help text (no TensorFlow here).

Train flags are named after `TrainConfig` fields (`--batch-size` sets `batch_size`); flags
left out are None, so that a preset's value or the config default applies.
"""

from __future__ import annotations

import argparse

from tfcnn import __version__, cli_explain
from tfcnn.core.config import TrainConfig

_DEFAULTS = TrainConfig()


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", help="train a model (defaults reproduce the tutorial)",
        description="Train a CNN with a custom tf.GradientTape loop. With no options this is "
                    "the tutorial's run: MNIST, its network, Adam, batch 32, 5 epochs.")
    p.add_argument("--preset", help="a measured recipe whose settings fill in the flags not "
                                    "given: tutorial (the defaults), fast or best")
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
    p.add_argument("--schedule", choices=("constant", "onecycle", "cosine"),
                   help="learning rate schedule: constant; onecycle (linear warm-up to --lr, "
                        "then cosine decay to 0); cosine (from --lr to 0) (default constant)")
    p.add_argument("--warmup", type=float, metavar="F",
                   help=f"onecycle: fraction of the steps spent warming up "
                        f"(default {_DEFAULTS.warmup})")
    p.add_argument("--weight-decay", type=float, metavar="W",
                   help="AdamW's decoupled weight decay (default 0: plain Adam)")
    p.add_argument("--label-smoothing", type=float, metavar="F",
                   help="label smoothing of the training loss (default 0)")
    p.add_argument("--ema", type=float, metavar="M",
                   help="keep an exponential moving average of the weights with momentum M "
                        "(e.g. 0.999): epochs are evaluated, and model.keras saved, with it "
                        "(default 0: none)")
    p.add_argument("--val-split", type=float, metavar="F",
                   help="hold out this fraction of the training images (stratified, seeded) "
                        "for validation; epochs report validation metrics, the best epoch is "
                        "kept, the test set is used once at the end (default: none)")
    p.add_argument("--test-split", type=float, metavar="F",
                   help="image folders without train/ and test/ sub-folders: the fraction of "
                        "each class held out as the test set (default 0.1)")
    aug = p.add_argument_group("augmentation (random, in the training graph, seeded)")
    aug.add_argument("--shift", type=float, metavar="PX",
                     help="random shifts of up to PX pixels in each axis (default 0)")
    aug.add_argument("--rotate", type=float, metavar="DEG",
                     help="random rotations of up to DEG degrees either way (default 0)")
    aug.add_argument("--zoom", type=float, metavar="F",
                     help="random zoom between 1-F and 1+F (default 0)")
    aug.add_argument("--hflip", action="store_const", const=True,
                     help="random left-right mirroring (for clothes, not digits)")
    aug.add_argument("--erase", type=float, metavar="P",
                     help="random erasing: blank one random rectangle (2-25%% of the image) "
                          "with probability P (default 0)")
    aug.add_argument("--elastic", type=float, metavar="ALPHA",
                     help="elastic distortion (Simard et al. 2003): a smooth random field "
                          "scaled by ALPHA pixels moves each pixel, as handwriting varies "
                          "(default 0; 34 is Simard's)")
    aug.add_argument("--elastic-sigma", type=float, metavar="PX",
                     help=f"smoothness of the elastic field (default {_DEFAULTS.elastic_sigma:g})")
    aug.add_argument("--crop-area", type=float, metavar="F",
                     help="photos: random resized crop keeping F to all of the image's area, "
                          "aspect 3:4 to 4:3, resized back (default 0: off; e.g. 0.35)")
    aug.add_argument("--brightness", type=float, metavar="F",
                     help="photos: random brightness change of up to F (0-1), added "
                          "(default 0)")
    aug.add_argument("--contrast", type=float, metavar="F",
                     help="photos: random contrast factor from 1-F to 1+F (default 0)")
    aug.add_argument("--saturation", type=float, metavar="F",
                     help="photos: random saturation factor from 1-F to 1+F (default 0)")
    aug.add_argument("--hue", type=float, metavar="TURNS",
                     help="photos: random hue rotation of up to TURNS (0-0.5) either way "
                          "(default 0)")
    aug.add_argument("--mixup", type=float, metavar="A",
                     help="mixup: blend pairs of images and their labels, weights from "
                          "Beta(A, A) (default 0: off; e.g. 0.2)")
    aug.add_argument("--cutmix", type=float, metavar="A",
                     help="cutmix: paste a box of another image, its share from Beta(A, A) "
                          "(default 0: off; e.g. 1.0); with --mixup, a coin picks one")
    p.add_argument("--class-weight", choices=("balanced",),
                   help="balanced: weight each class's loss by n / (classes * its count) "
                        "in the training images (imbalanced folders)")
    tl = p.add_argument_group("transfer learning (--model keras:NAME)")
    tl.add_argument("--weights", metavar="imagenet|none|PATH",
                    help="the backbone's weights: imagenet (Keras's cache, ~/.keras/models), "
                         "none (random; the whole network trains) or a weights file "
                         "(default none)")
    tl.add_argument("--freeze-epochs", type=int, metavar="N",
                    help="with pretrained weights: train only the new head for the first N "
                         "epochs, then fine-tune the backbone (default 0)")
    tl.add_argument("--fine-tune-lr", type=float, metavar="LR",
                    help="learning rate once the backbone is unfrozen (default --lr / 10)")
    tl.add_argument("--fine-tune-layers", type=int, metavar="N",
                    help="fine-tune only the backbone's last N layers with weights "
                         "(default: all; batch norms stay frozen)")
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
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                   help="float32, or mixed_bfloat16: bfloat16 arithmetic with float32 weights, "
                        "faster on CPUs with AVX512-BF16/AMX (default float32)")
    p.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi-worker"),
                   help="tf.distribute strategy: default (one device), mirrored (local GPUs), "
                        "multi-worker (TF_CONFIG), auto (picks one) (default auto)")
    p.add_argument("--out", metavar="DIR",
                   help="run directory (default runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last checkpoint "
                        "(--epochs may raise the target)")
    p.add_argument("--quiet", action="store_true", help="print only the run directory")
    p.add_argument("--ensemble", type=int, metavar="N",
                   help="train N models (seeds SEED, SEED+1, ...) into DIR/member-1..N and "
                        "report their averaged test accuracy in DIR/ensemble.json; "
                        "--resume DIR continues an ensemble")
    folder = p.add_argument_group("image-folder datasets (--dataset folder:PATH)")
    folder.add_argument("--image-size", metavar="N|HxW",
                        help="resize every image to N x N or H x W (default 28)")
    folder.add_argument("--cache", choices=("memory", "disk", "none"),
                        help="where decoded images are kept: memory (decoded before training), "
                             "disk (streamed from the files, decoded once into RUN/cache/), "
                             "none (streamed, decoded every epoch) (default: memory when they "
                             "fit in 256 MiB, else none)")
    colour = folder.add_mutually_exclusive_group()
    colour.add_argument("--grayscale", dest="grayscale", action="store_const", const=True,
                        help="one channel (default)")
    colour.add_argument("--rgb", dest="grayscale", action="store_const", const=False,
                        help="three colour channels")


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
                   help="how long a batch waits for more concurrent requests (default 2)")

    p = commands.add_parser("export", help="export a model: keras, saved_model or tflite",
                            description="Write the model in a deployable format. The exported "
                                        "model outputs class probabilities.")
    p.add_argument("source", metavar="RUN_DIR|MODEL", help=source_help)
    p.add_argument("--format", required=True, choices=("keras", "saved_model", "tflite"))
    p.add_argument("--quantize", default="none", choices=("none", "dynamic", "float16"),
                   help="TFLite weight quantization (default none)")
    p.add_argument("--out", required=True, metavar="PATH", help="file or folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfcnn", description="Train, evaluate and serve CNN image classifiers "
                                  "(TensorFlow 2 / Keras 3).")
    parser.add_argument("--version", action="version", version=f"tfcnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_use_parsers(commands)
    cli_explain.add_parser(commands)
    doctor = commands.add_parser("doctor", help="check the TensorFlow install, devices and data",
                                 description="Report TensorFlow and Keras versions, GPUs, CPU "
                                             "threads and where each dataset would load from.")
    doctor.add_argument("--data-dir", metavar="DIR", help="data folder to check as well")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    # main() reports an unknown flag with its own command's usage, not the top-level one.
    parser.set_defaults(subcommands=commands.choices)
    return parser
