"""`tfcnn explain`: why a model answers what it answers, for image files or for the
highest-loss test images of a dataset.

For each image: one PNG figure (the input as the model saw it, the top-3 classes, each
method's heatmap over the input) and one `.npy` attribution array (H×W) per method, in
`--out`; `--layers` adds each convolution's feature maps and the first layer's filters.
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

DEFAULT_WORST = 16


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
                   help="also draw every convolution's feature maps and the first layer's "
                        "filters")
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


def _file_batch(model: Any, paths: list[str]) -> tuple[np.ndarray, list[str], list[dict]]:
    """The decoded inputs and their names, and an error entry per unusable file."""
    from tfcnn.images.decode import ImageError
    from tfcnn.predict.inputs import expand_inputs, file_input

    arrays, names, errors = [], [], []
    for entry in expand_inputs(paths):
        try:
            arrays.append(file_input(entry, model.preprocessing, tuple(model.image_shape)))
            names.append(str(entry))
        except ImageError as exc:
            errors.append({"file": str(entry), "error": str(exc)})
    batch = np.stack(arrays) if arrays else np.zeros((0, *model.image_shape), np.float32)
    return batch, names, errors


def _worst_batch(model: Any, model_file: Path, args: argparse.Namespace
                 ) -> tuple[np.ndarray, list[str], list[str]]:
    """The highest-loss test images (float32 inputs), their names and true labels."""
    from tfcnn.evaluation.report import model_logits, run_dir_of, test_set_for

    test = test_set_for(model_file, model, args.dataset, args.data_dir, run_dir_of(model_file))
    logits = model_logits(model, test.images).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    losses = -log_probs[np.arange(len(logits)), test.labels.astype(np.int64)]
    worst = np.argsort(-losses, kind="stable")[:args.worst or DEFAULT_WORST]
    images = np.asarray(test.images[worst]).astype(np.float32) / np.float32(255.0)
    if images.ndim == 3:
        images = images[..., None]
    names = [f"{test.name}-test-{int(i)}" for i in worst]
    return images, names, [test.class_names[int(test.labels[i])] for i in worst]


def _save_npy(path: Path, array: np.ndarray) -> str:
    from tfcnn.core.fsutil import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32))
    return str(path)


def _write(explanations: list[Any], out: Path, layers: bool, model: Any,
           truths: list[str] | None) -> list[dict[str, Any]]:
    from tfcnn.explain.layers import save_layer_figures

    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    results = []
    for i, e in enumerate(explanations):
        stem = _stem(e.prediction.source, used)
        entry = {**e.prediction.to_dict(), "target": e.target_label}
        if truths is not None:
            entry["true"] = truths[i]
        entry["figure"] = str(e.save_figure(out / f"{stem}-explained.png"))
        entry["attributions"] = {m: _save_npy(out / f"{stem}-{m}.npy", heat)
                                 for m, heat in e.heatmaps.items()}
        if layers:
            entry["layers"] = save_layer_figures(model, e.image, out, stem)
        results.append(entry)
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
    from tfcnn.explain.run import explain_images

    model, model_file = classifier.keras_model, classifier.path
    truths = None
    errors: list[dict[str, Any]] = []
    if args.paths:
        batch, names, errors = _file_batch(model, args.paths)
    else:
        batch, names, truths = _worst_batch(model, model_file, args)
    out = Path(args.out) if args.out else model_file.parent / "explanations"
    explanations = explain_images(model, batch, args.method, targets=args.target,
                                  sources=names) if len(batch) else []
    try:
        results = _write(explanations, out, args.layers, model, truths) + errors
    except OSError as exc:
        raise TfcnnError(f"--out {out}: cannot write ({exc.strerror or exc})") from exc
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_text(results)
    return EXIT_PARTIAL if errors else 0
