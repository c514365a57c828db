"""`tfcnn explain`: why a model answers what it answers, for image files or for the
highest-loss test images of a dataset.

For each image: one PNG figure (the input as the model saw it, the top-3 classes, each
method's heatmap over the input) and one `.npy` attribution array (H×W) per method, in
`--out`; `--layers` adds feature maps (of `--max-layers` convolutions, `--max-channels`
channels each) and the first layer's filters.
`--json` prints one object per image: `file`, the `predict --json` fields, `target`,
`figure`, `attributions` (method → .npy path) and, with `--layers`, `layers`.

`add_parser` declares the command (no TensorFlow imported); `run` executes it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import EXIT_PARTIAL, ConfigError, TfcnnError
from tfcnn.explain.explanation import MAX_CHANNELS, MAX_LAYERS

DEFAULT_WORST = 16


def _limit(text: str) -> int:
    """A --max-layers/--max-channels value: 0 (all) or a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all) or a positive integer, got "
                                         f"{text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `explain` command to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "explain", help="heatmaps of why the model answers what it answers",
        description="Explain a model's answers: for each image, a PNG figure (the input as "
                    "the model saw it, the top-3 classes, each method's heatmap) and the "
                    "attribution arrays (.npy, H x W). Give image files, or --dataset NAME "
                    "--worst N for the highest-loss test images.")
    p.add_argument("source", metavar="RUN_DIR|MODEL",
                   help="a run directory (its model.keras) or a .keras model file")
    p.add_argument("paths", metavar="IMAGE", nargs="*", help="image files, folders or globs")
    p.add_argument("--method", default="gradcam",
                   help="gradcam (default), integrated-gradients, occlusion, or all; "
                        "several comma-separated")
    p.add_argument("--target", metavar="CLASS",
                   help="class (name or index) to explain (default: the predicted class)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the figures and arrays (default: explanations/ beside "
                        "the model file)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--layers", action="store_true",
                   help="also draw the convolutions' feature maps and the first layer's "
                        "filters")
    p.add_argument("--max-layers", type=_limit, default=MAX_LAYERS, metavar="N",
                   help=f"with --layers: at most N convolutions, evenly spaced through the "
                        f"network (default {MAX_LAYERS}; 0: all)")
    p.add_argument("--max-channels", type=_limit, default=MAX_CHANNELS, metavar="N",
                   help=f"with --layers: the N strongest channels of each (default "
                        f"{MAX_CHANNELS}; 0: all)")
    p.add_argument("--dataset", help="explain test images of this dataset (mnist, "
                                     "fashion_mnist or folder:PATH) instead of files")
    p.add_argument("--worst", type=int, metavar="N",
                   help=f"the N highest-loss test images (default {DEFAULT_WORST} with "
                        "--dataset; the model's own dataset when --dataset is not given)")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (as for train)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    from tfcnn.explain.explanation import parse_methods

    parse_methods(args.method)
    from_data = args.dataset is not None or args.worst is not None
    if from_data and args.paths:
        raise ConfigError("give IMAGE files or --dataset/--worst, not both")
    if not from_data and not args.paths:
        raise ConfigError("no IMAGE given (or use --dataset NAME --worst N)")
    if args.worst is not None and args.worst < 1:
        raise ConfigError(f"--worst: expected a positive integer, got {args.worst}")


def _stem(text: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).stem if "/" in text or "." in text
                  else text).strip("._-") or "image"
    unique, n = stem, 2
    while unique in used:
        unique, n = f"{stem}-{n}", n + 1
    used.add(unique)
    return unique


def _save_npy(path: Path, array: np.ndarray) -> str:
    from tfcnn.core.fsutil import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32))
    return str(path)


def _progress(total: int) -> Any:
    """A bar on stderr ("explained 120/1000"), none when stderr is not a terminal."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="explained", unit="image", file=sys.stderr, leave=False,
                disable=None if total > 1 else True, dynamic_ncols=True)


def _write(explanations: list[Any], out: Path, layers: bool, model: Any,
           truths: list[str] | None, max_layers: int = MAX_LAYERS,
           max_channels: int = MAX_CHANNELS) -> list[dict[str, Any]]:
    """Each explanation's figure and arrays (and with `layers` its layer figures) in `out`,
    one image at a time, each figure closed before the next; the `--json` entries."""
    from tfcnn.explain.layers import save_layer_figures

    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    results = []
    with _progress(len(explanations)) as bar:
        for i, e in enumerate(explanations):
            stem = _stem(e.prediction.source, used)
            entry = {**e.prediction.to_dict(), "target": e.target_label}
            if truths is not None:
                entry["true"] = truths[i]
            entry["figure"] = str(e.save_figure(out / f"{stem}-explained.png"))
            entry["attributions"] = {m: _save_npy(out / f"{stem}-{m}.npy", heat)
                                     for m, heat in e.heatmaps.items()}
            if layers:
                entry["layers"] = save_layer_figures(model, e.image, out, stem, max_layers,
                                                     max_channels)
            results.append(entry)
            bar.update(1)
    return results


def _print_text(results: list[dict[str, Any]]) -> None:
    for r in results:
        if "error" in r:
            print(f"{r['file']}: error: {r['error']}")
            continue
        truth = f", true {r['true']}" if "true" in r else ""
        print(f"{r['file']}: predicted {r['label']} ({100 * r['probability']:.1f}%{truth}), "
              f"explained {r['target']} -> {r['figure']}")
        if "layers" in r:
            print(f"  layers: {', '.join(r['layers'].values())}")


def run(args: argparse.Namespace) -> int:
    """Run `tfcnn explain`; returns the exit status (1 when some files were unusable)."""
    from tfcnn.api.classifier import load

    _check_args(args)
    classifier = load(args.source)  # the API's loader: the checks every command gets
    truths = None
    errors: list[dict[str, Any]] = []
    if args.paths:
        explanations, errors = classifier.explain_files(args.paths, args.method, args.target)
    else:
        images, names, truths = classifier.worst_images(args.worst or DEFAULT_WORST,
                                                        args.dataset, args.data_dir)
        explanations = classifier.explain(images, args.method, args.target, preprocess=False,
                                          sources=names)
    out = Path(args.out) if args.out else classifier.path.parent / "explanations"
    try:
        results = _write(explanations, out, args.layers, classifier, truths,
                         args.max_layers, args.max_channels) + errors
    except OSError as exc:
        raise TfcnnError(f"--out {out}: cannot write ({exc.strerror or exc})") from exc
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_text(results)
    return EXIT_PARTIAL if errors else 0
