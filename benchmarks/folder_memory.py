"""Memory of training on a large image folder streamed from disk: the peak RSS of `tfcnn
train` on a generated folder of many small JPEGs.

    python benchmarks/folder_memory.py --images 200000 --work /tmp/folder-memory

Generates `--images` JPEGs (32×32 colour noise over a class-coloured gradient, 10 class
folders; ~1 KB each, made once and kept in `--work`), then runs one epoch of

    tfcnn train --dataset folder:WORK/images --rgb --image-size 32 --cache CACHE ...

for each `--cache` value asked, and prints the process's peak resident memory (the kernel's
`ru_maxrss` of the finished child), its wall time and the images trained on.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10


def make_folder(root: Path, count: int, seed: int = 0) -> Path:
    """`count` small JPEGs in CLASSES class folders (kept: made once per count)."""
    done = root / f".complete-{count}"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 32, dtype=np.float32)[None, :, None]
    for i in range(count):
        label = i % CLASSES
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256],
                          np.float32)
        pixels = colour * ramp + rng.normal(0, 25, (32, 32, 3)).astype(np.float32)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"{i:07d}.jpg", quality=85)
    done.write_text("")
    return root


def train_peak(root: Path, out: Path, cache: str) -> dict:
    """One epoch of training on `root`; the child's peak RSS (MB), seconds and image count."""
    command = [sys.executable, "-m", "tfcnn", "train", "--dataset", f"folder:{root}", "--rgb",
               "--image-size", "32", "--cache", cache, "--model", "16C3S2-BN-32C3S2-BN-GAP-D10",
               "--epochs", "1", "--batch-size", "256", "--seed", "1", "--out", str(out),
               "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kb <= before:  # an earlier child peaked higher: ru_maxrss is the max of all
        raise SystemExit("run each --cache in its own invocation to measure it alone")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"cache": cache, "peak_rss_mb": round(peak_kb / 1024), "seconds": round(seconds, 1),
            "test_accuracy": metrics["epochs"][-1]["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/folder-memory"))
    parser.add_argument("--cache", default="none", choices=("none", "disk", "memory"))
    args = parser.parse_args()
    root = args.work / f"images-{args.images}"
    started = time.perf_counter()
    make_folder(root, args.images)
    print(f"folder: {root} ({args.images:,} JPEGs; ready after "
          f"{time.perf_counter() - started:.0f} s)", flush=True)
    out = args.work / f"run-{args.cache}-{time.strftime('%H%M%S')}"
    print(json.dumps(train_peak(root, out, args.cache)))


if __name__ == "__main__":
    main()
