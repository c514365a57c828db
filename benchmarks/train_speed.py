"""Training speed: a tutorial-style loop (A) against `tfcnn train` (B), alternated A B A B.

Run on demand, not in the test suite:

    python benchmarks/train_speed.py --data-dir ../shared/datasets --pairs 3
    python benchmarks/train_speed.py --data-dir ../shared/datasets --pairs 3 \\
        --reference ../shared/reference/tutorial_program.py     # adds the tutorial itself (T)

Arm A is written here in the tutorial's manner: one `tf.function` call per step, a tf.data
`shuffle(15000).batch(32)` pipeline with no prefetch, Adam, the tutorial's network (as logits
with a from-logits loss, which costs the same as the tutorial's softmax version). Arm B is
`tfcnn train --model tutorial --batch-size 32 --epochs 5`. Arm T, when given, runs the
tutorial's program unchanged. Each run is a fresh process; its whole wall time is measured
from outside. The arms alternate so that slow phases of a shared machine hit all of them.

Reported per run: steady-state training images/s (median over epochs 2..E, training phase
only), median epoch seconds (train + test), whole-process seconds, and percent of the CPU's
FP32 peak (counted FLOPs of a training step / time / peak from the clock read off the machine).
Then B/A (and B/T) ratios of whole-process time: min / median / max over the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN_IMAGES = 60_000


def training_flops_per_image(notation: str = "32C3-P2-32C3-P2-32C5S2-BN-DO40-D128-D10") -> float:
    """Multiply-adds x 2 of the conv and dense layers, x 3 for forward + backward."""
    from tfcnn.spec import notation as nt

    height = width = 28
    channels = 1
    forward = 0.0
    features = None
    for spec in nt.parse_notation(notation):
        if isinstance(spec, nt.Conv):
            height = (height - spec.kernel) // spec.stride + 1
            width = (width - spec.kernel) // spec.stride + 1
            forward += 2 * spec.kernel ** 2 * channels * spec.filters * height * width
            channels = spec.filters
        elif isinstance(spec, nt.Pool):
            height, width = height // spec.size, width // spec.size
        elif isinstance(spec, nt.Dense):
            features = features or height * width * channels
            forward += 2 * features * spec.units
            features = spec.units
    return 3 * forward


def peak_flops() -> tuple[float, str]:
    """FP32 peak: cores x 2 FMA units x 8 lanes (AVX2) x 2 flops x clock (from /proc/cpuinfo)."""
    mhz = None
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz") and mhz is None:
            mhz = float(line.split(":")[1])
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
    cores = os.cpu_count() or 1
    ghz = (mhz or 0) / 1000
    return cores * 2 * 8 * 2 * ghz * 1e9, f"{model}, {cores} cores at {ghz:.3f} GHz"


def tutorial_style_arm(data_dir: str, epochs: int) -> None:
    """Arm A, run in its own process: prints one JSON line of per-epoch timings."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfcnn.data.locate import load_dataset
    from tfcnn.models.network import build_model
    from tfcnn.spec.notation import NETWORKS as PRESETS

    data = load_dataset("mnist", data_dir)
    x_train = (data.x_train / 255.0)[..., None].astype("float32")
    x_test = (data.x_test / 255.0)[..., None].astype("float32")
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, data.y_train)).shuffle(15000).batch(32)
    test_ds = tf.data.Dataset.from_tensor_slices((x_test, data.y_test)).batch(32)
    model = build_model(PRESETS["tutorial"], (28, 28, 1), tuple("0123456789"), seed=0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam()
    accuracy = keras.metrics.SparseCategoricalAccuracy()

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    @tf.function
    def test_step(images, labels):
        accuracy.update_state(labels, model(images, training=False))

    train_phase, epoch_seconds = [], []
    for _ in range(epochs):
        started = time.perf_counter()
        for images, labels in train_ds:
            train_step(images, labels)
        train_phase.append(time.perf_counter() - started)
        accuracy.reset_state()
        for images, labels in test_ds:
            test_step(images, labels)
        epoch_seconds.append(time.perf_counter() - started)
    print(json.dumps({"train_phase": train_phase, "epoch_seconds": epoch_seconds,
                      "test_accuracy": float(accuracy.result()), "numpy": np.__version__}))


def run_arm(arm: str, args: argparse.Namespace, seed: int) -> dict:
    """Run one arm in a fresh process; return its timings."""
    with tempfile.TemporaryDirectory() as tmp:
        if arm == "A":
            cmd = [sys.executable, __file__, "--arm-a", "--data-dir", args.data_dir,
                   "--epochs", str(args.epochs)]
        elif arm == "B":
            cmd = [sys.executable, "-m", "tfcnn", "train", "--model", "tutorial",
                   "--batch-size", "32", "--epochs", str(args.epochs), "--seed", str(seed),
                   "--data-dir", args.data_dir, "--out", str(Path(tmp) / "run")]
        else:
            cmd = [sys.executable, args.reference, str(Path(args.data_dir) / "mnist")]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"arm {arm} failed: {done.stderr[-2000:]}")
        if arm == "A":
            result = json.loads(done.stdout.strip().splitlines()[-1])
        elif arm == "B":
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("Epoch ")]
            rates = [float(re.search(r"([\d,]+) images/s", ln)[1].replace(",", ""))
                     for ln in lines]
            metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
            result = {"train_phase": [TRAIN_IMAGES / r for r in rates],
                      "epoch_seconds": [e["seconds"] for e in metrics["epochs"]],
                      "test_accuracy": metrics["test_accuracy"]}
        else:
            result = {"train_phase": [], "epoch_seconds": [],
                      "test_accuracy": float(re.findall(r"Test Accuracy: ([\d.]+)",
                                                        done.stdout)[-1]) / 100}
    result.update(arm=arm, wall=wall)
    return result


def summarise(result: dict, flops_per_image: float, peak: float) -> str:
    steady = result["train_phase"][1:]
    if not steady:
        return (f"{result['arm']}: whole process {result['wall']:.1f} s, "
                f"test accuracy {100 * result['test_accuracy']:.2f}%")
    rate = TRAIN_IMAGES / statistics.median(steady)
    return (f"{result['arm']}: {rate:,.0f} train images/s steady, epoch "
            f"{statistics.median(result['epoch_seconds'][1:]):.1f} s, whole process "
            f"{result['wall']:.1f} s, {100 * rate * flops_per_image / peak:.1f}% of FP32 peak, "
            f"test accuracy {100 * result['test_accuracy']:.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reference", help="path of the tutorial's program (arm T)")
    parser.add_argument("--json", help="also write all results to this file")
    parser.add_argument("--arm-a", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm_a:
        tutorial_style_arm(args.data_dir, args.epochs)
        return
    flops = training_flops_per_image()
    peak, machine = peak_flops()
    print(f"{machine}; peak {peak / 1e9:.1f} GFLOP/s; tutorial net {flops / 1e6:.2f} MFLOP "
          f"per training image", flush=True)
    arms = ["A", "B"] + (["T"] if args.reference else [])
    results = []
    for pair in range(args.pairs):
        for arm in arms:
            result = run_arm(arm, args, seed=pair)
            results.append(result)
            print(f"pair {pair + 1} {summarise(result, flops, peak)}", flush=True)
    walls = {arm: [r["wall"] for r in results if r["arm"] == arm] for arm in arms}
    for other in [a for a in arms if a != "B"]:
        ratios = [b / o for b, o in zip(walls["B"], walls[other], strict=True)]
        print(f"B/{other} whole-process time: min {min(ratios):.3f}, median "
              f"{statistics.median(ratios):.3f}, max {max(ratios):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
