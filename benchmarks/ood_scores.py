"""How well each out-of-distribution score tells a model's own kind of image from others.

For a trained run: in-distribution images (its dataset's test set), and out-of-distribution
sets (another dataset's test images, synthetic patterns, noise, photos), all written as PNG
or JPEG files and read the way `tfcnn predict` reads files (the one decoder, the model's
host-side step). For each score (`tfcnn.models.calibration.OOD_SCORES`): AUROC (in against
each out set), and the share of each out set caught as "unknown" at a threshold accepting
95% of the in-distribution test images; then what the model's own stored rule (fitted by
training on its validation or training images) flags in each set.

    python benchmarks/ood_scores.py RUN --data-dir ../shared/datasets --in mnist \\
        --out fashion_mnist --out patterns --out noise \\
        --out photos:../shared/datasets/fashion_photos/test

Prints a Markdown table (and `--json`).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def patterns(count: int, size: int, seed: int) -> list[Image.Image]:
    """Synthetic non-digits: noise, stripes, checkerboards, gradients, blobs, flat greys,
    rectangles and circles, in equal numbers."""
    rng = np.random.default_rng(seed)
    made: list[Image.Image] = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    kinds = ["noise", "stripes", "checker", "gradient", "blobs", "flat", "shapes", "rings"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "noise":
            a = rng.integers(0, 256, (size, size))
        elif kind == "stripes":
            f, angle = rng.uniform(2, 8), rng.uniform(0, np.pi)
            a = 127.5 + 127.5 * np.sin(2 * np.pi * f * (xx * np.cos(angle) + yy * np.sin(angle)))
        elif kind == "checker":
            k = int(rng.integers(2, 8))
            a = ((np.floor(xx * k) + np.floor(yy * k)) % 2) * 255
        elif kind == "gradient":
            a = 255 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
            a = (a - a.min()) / max(1e-6, np.ptp(a)) * 255
        elif kind == "blobs":
            a = np.zeros((size, size))
            for _ in range(int(rng.integers(3, 9))):
                cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
                a += 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        elif kind == "flat":
            a = np.full((size, size), rng.integers(0, 256))
        else:
            image = Image.new("L", (size, size), int(rng.integers(0, 80)))
            draw = ImageDraw.Draw(image)
            for _ in range(int(rng.integers(2, 6))):
                box = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
                shape = [box[0][0], box[1][0], box[0][1] + 2, box[1][1] + 2]
                fill = int(rng.integers(120, 256))
                (draw.ellipse if kind == "rings" else draw.rectangle)(
                    shape, outline=fill, width=int(rng.integers(1, 4)))
            made.append(image)
            continue
        made.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    return made


def write_files(images: list[Any], folder: Path, suffix: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image if image.ndim == 2 or image.shape[2] == 3
                                    else image[..., 0])
        path = folder / f"{i:05d}.{suffix}"
        image.save(path)
        paths.append(path)
    return paths


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside image scores above an inside one), ties counted half (Mann-Whitney)."""
    scores = np.concatenate([inside, outside])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        same = scores == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    outside_ranks = ranks[len(inside):].sum()
    n_out, n_in = len(outside), len(inside)
    return float((outside_ranks - n_out * (n_out + 1) / 2) / (n_out * n_in))


def file_logits(clf: Any, paths: list[Path]) -> np.ndarray:
    """Logits of image files, prepared as `tfcnn predict` prepares them."""
    from tfcnn.predict.inputs import file_input

    batch = np.stack([file_input(p, clf.prepare, clf.image_shape) for p in paths])
    return clf.logits(batch)


def out_sets(specs: list[str], count: int, data_dir: str | None, shape: tuple[int, ...],
             tmp: Path, seed: int) -> dict[str, list[Path]]:
    import tfcnn

    sets: dict[str, list[Path]] = {}
    for spec in specs:
        if spec == "patterns":
            sets[spec] = write_files(patterns(count, max(shape[:2]) * 2, seed), tmp / spec)
        elif spec.startswith("photos:"):
            files = sorted(Path(spec[7:]).rglob("*.jpg"))
            step = max(1, len(files) // count)
            sets["photos"] = files[::step][:count]
        elif spec == "noise":
            rng = np.random.default_rng(seed)
            noise = [rng.integers(0, 256, (*shape[:2], 3), np.uint8) for _ in range(count)]
            sets[spec] = write_files(noise, tmp / spec)
        else:
            (_, _), (x_test, _), _ = tfcnn.datasets.load(spec, data_dir)
            sets[spec] = write_files(list(x_test[:count]), tmp / spec)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory")
    parser.add_argument("--data-dir")
    parser.add_argument("--in", dest="inside", default="mnist",
                        help="the in-distribution dataset (its test images), or "
                             "photos:FOLDER (its JPEG files)")
    parser.add_argument("--out", dest="outside", action="append", default=[],
                        help="fashion_mnist, mnist, patterns, noise or photos:FOLDER")
    parser.add_argument("--count", type=int, default=1000, help="images per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import tfcnn
    from tfcnn.models.calibration import OOD_SCORES, ood_scores

    clf = tfcnn.load(args.run)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.inside.startswith("photos:"):  # image files as they are
            files = sorted(Path(args.inside[7:]).rglob("*.jpg"))
            inside = file_logits(clf, files[::max(1, len(files) // args.count)][:args.count])
        else:
            (_, _), (x_in, _), _ = tfcnn.datasets.load(args.inside, args.data_dir)
            inside = file_logits(clf, write_files(list(x_in[:args.count]), tmp / "inside"))
        outside = {name: file_logits(clf, paths) for name, paths in
                   out_sets(args.outside or ["patterns"], args.count, args.data_dir,
                            clf.image_shape, tmp, args.seed).items()}
    rule = clf.calibration.ood
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "run": args.run,
        "images_per_set": args.count, "seconds": round(time.perf_counter() - started, 1),
        "stored_rule": None if rule is None else rule.to_config(), "scores": {}}
    for score in OOD_SCORES:
        ins = ood_scores(inside, score)
        # A threshold at the 95% quantile of the in-distribution test scores: the share an
        # ideal fit would catch (the stored rule, fitted elsewhere, is reported below).
        threshold = float(np.quantile(ins, 0.95))
        report["scores"][score] = {
            name: {"auroc": round(auroc(ins, ood_scores(z, score)), 4),
                   "caught_at_95": round(float((ood_scores(z, score) > threshold).mean()), 4)}
            for name, z in outside.items()}
    if rule is not None:
        report["stored_rule_flags"] = {
            "inside": round(float(rule.unknown(inside).mean()), 4),
            **{name: round(float(rule.unknown(z).mean()), 4) for name, z in outside.items()}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['date']}, {report['cpu']}, {args.count} images per set, run {args.run}")
    print("| score | set | AUROC | caught at 95% acceptance |")
    print("|---|---|---|---|")
    for score, sets in report["scores"].items():
        for name, figures in sets.items():
            print(f"| {score} | {name} | {figures['auroc']:.4f} | "
                  f"{100 * figures['caught_at_95']:.1f}% |")
    if rule is not None:
        flags = report["stored_rule_flags"]
        print(f"Stored rule ({rule.score}, fitted on {rule.fitted_on} images): flags "
              + ", ".join(f"{name} {100 * v:.1f}%" for name, v in flags.items()))


if __name__ == "__main__":
    main()
