"""Deletion test of the explanation methods: does blanking the pixels a method ranks highest
hurt the model more than blanking as many pixels at random?

For each MNIST test image (the first N), each method's attribution map for the true class
ranks the pixels; the top FRACTION of them are set to 0 (black, MNIST's background) and the
drop of the true class's probability is measured; the same with FRACTION of the pixels
chosen at random (a seeded generator per run). A faithful method drops it several times
more than random. Also the time per image per method (whole batch, this CPU).

    python benchmarks/explain_deletion.py --model tutorial=/tmp/tut --model best=/tmp/best \\
        --data-dir ../shared/datasets [--images 500] [--fraction 0.1] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("gradcam", "integrated-gradients", "occlusion")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def true_probability(model: Any, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[np.arange(len(x)), labels]


def blank_top(x: np.ndarray, scores: np.ndarray, fraction: float) -> np.ndarray:
    """Copies of `x` with each image's `fraction` highest-scoring pixels set to 0."""
    n, h, w = scores.shape
    count = round(fraction * h * w)
    # Stable sort on the negated scores: ties (flat regions) go in pixel order.
    top = np.argsort(-scores.reshape(n, -1), axis=1, kind="stable")[:, :count]
    flat = x.reshape(n, h * w, -1).copy()
    flat[np.arange(n)[:, None], top] = 0.0
    return flat.reshape(x.shape)


def measure(model: Any, x: np.ndarray, labels: np.ndarray, fraction: float, seed: int
            ) -> dict[str, Any]:
    from tfcnn.explain.batch import attributions

    base = true_probability(model, x, labels)
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    random_scores = rng.random(x.shape[:3])
    drop = base - true_probability(model, blank_top(x, random_scores, fraction), labels)
    results["random"] = {"mean_drop": float(drop.mean()), "seconds_per_image": 0.0}
    for method in METHODS:
        start = time.perf_counter()
        maps = attributions(model, x, labels, method)
        seconds = (time.perf_counter() - start) / len(x)
        drop = base - true_probability(model, blank_top(x, maps, fraction), labels)
        results[method] = {"mean_drop": float(drop.mean()), "seconds_per_image": seconds}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a run directory or .keras file, named (repeatable)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tfcnn.data.locate import load_dataset
    from tfcnn.models.trained import TrainedModel

    data = load_dataset("mnist", args.data_dir)
    x = data.x_test[:args.images, ..., None].astype(np.float32) / np.float32(255.0)
    labels = data.y_test[:args.images].astype(np.int32)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                              "images": len(x), "fraction": args.fraction, "models": {}}
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = TrainedModel.load(path)
        accuracy = float((model.predict_proba(x).argmax(axis=1) == labels).mean())
        report["models"][name] = {"path": path,
                                  "notation": getattr(model.network, "notation", ""),
                                  "accuracy": accuracy,
                                  **measure(model, x, labels, args.fraction, args.seed)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['date']}, {report['cpu']}, first {len(x)} MNIST test images, "
          f"top {100 * args.fraction:.0f}% of pixels blanked")
    print("| model | method | mean drop of p(true) | × random | ms / image |")
    print("|---|---|---|---|---|")
    for name, result in report["models"].items():
        random = result["random"]["mean_drop"]
        for method in ("random", *METHODS):
            r = result[method]
            ratio = f"{r['mean_drop'] / random:.1f}" if random > 0 else "-"
            print(f"| {name} | {method} | {r['mean_drop']:.4f} | {ratio} | "
                  f"{1000 * r['seconds_per_image']:.1f} |")


if __name__ == "__main__":
    main()
