"""`tfcnn audit --json` on digits with wrong labels: precision, recall and seconds.

Builds a folder of PER_CLASS MNIST training digits per class (6,000 by default) as PNG
files, one sub-folder per class, with NOISE of the labels flipped to another class chosen
uniformly at random (seeded), then runs `tfcnn audit --dataset folder:DIR --json` as a user
would (a fresh process, its wall-clock time measured) and scores its `label_issues`
against the flipped files. Issue 26's bar: precision and recall >= 0.85 within 5 minutes.

    python benchmarks/audit_noisy_digits.py --data-dir ../shared/datasets [--seed 1]
        [--per-class 600] [--noise 0.05] [--work /tmp/audit-bench] [-- EXTRA AUDIT FLAGS]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def build_noisy_folder(folder: Path, data_dir: str, per_class: int, noise: float,
                       seed: int) -> dict[str, int]:
    """Write the digits as FOLDER/<given label>/<MNIST index>.png; {file: true label}."""
    from tfcnn.data.locate import load_dataset

    mnist = load_dataset("mnist", data_dir)
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(np.flatnonzero(mnist.y_train == c), per_class,
                                        replace=False) for c in range(10)])
    given = mnist.y_train[picked].astype(np.int64)
    flipped = rng.choice(len(picked), round(noise * len(picked)), replace=False)
    given[flipped] = (given[flipped] + rng.integers(1, 10, len(flipped))) % 10
    truth = {}
    for index, label in zip(picked, given, strict=True):
        path = folder / str(label) / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mnist.x_train[index]).save(path)
        truth[str(path)] = int(mnist.y_train[index])
    return truth


def score(issues: list[dict[str, Any]], truth: dict[str, int]) -> dict[str, float]:
    """Precision and recall of the listed files against the flipped ones."""
    wrong = {f for f, label in truth.items() if Path(f).parent.name != str(label)}
    listed = {issue["file"] for issue in issues}
    hits = len(wrong & listed)
    return {"listed": len(listed), "wrong": len(wrong), "found": hits,
            "precision": hits / len(listed) if listed else 0.0,
            "recall": hits / len(wrong) if wrong else 1.0,
            "suggested_right": sum(1 for i in issues if i["file"] in wrong
                                   and i["suggested"] == str(truth[i["file"]])) / max(hits, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding mnist/")
    parser.add_argument("--seed", type=int, default=1, help="which digits and flips")
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--work", default="/tmp/audit-bench", help="scratch folder (replaced)")
    parser.add_argument("extra", nargs="*", help="more `tfcnn audit` flags, after --")
    args = parser.parse_args()
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    folder = work / "digits"
    truth = build_noisy_folder(folder, args.data_dir, args.per_class, args.noise, args.seed)
    load = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tfcnn", "audit", "--dataset",
                           f"folder:{folder}", "--json", "--out", str(work / "report"),
                           *args.extra], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"tfcnn audit failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout)
    result = {"seed": args.seed, "images": len(truth), **score(report["label_issues"], truth),
              "seconds": round(seconds, 1), "cross_training_s": report["seconds"]["cross_training"],
              "epochs": [f["epochs"] for f in report["folds"]],
              "load_before": [round(v, 2) for v in load],
              "load_after": [round(v, 2) for v in os.getloadavg()],
              "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
