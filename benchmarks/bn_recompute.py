"""What recomputing batch-norm statistics costs each epoch of a short run (training/batchnorm.py).

    python benchmarks/bn_recompute.py --data-dir ../shared/datasets [--repeats 5]

A short run (under 688 steps) recomputes its statistics before each epoch's test and
model.keras. For each network below this trains a short MNIST run (2 epochs of 20,000
images at batch 256: 158 steps), then times `recompute_statistics` on the run's training
images (it uses up to 4,096) `--repeats` times, and prints the median beside the median
epoch time (training and testing, from metrics.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

NETWORKS = ("16C3-P2-16C3-P2-BN-DO20-D32-D10", "32C3-BN-32C3-BN-P2-64C3-BN-P2-D128-BN-D10")


def measure(network: str, data_dir: str, repeats: int) -> dict[str, float]:
    from tfcnn.core.config import TrainConfig
    from tfcnn.data.source import load_training_data
    from tfcnn.models.network import load_model
    from tfcnn.training import batchnorm
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    config = TrainConfig(model=network, epochs=2, batch_size=256, seed=1, lr=0.003,
                         data_dir=data_dir, limit_train=20_000)
    dataset, _ = load_training_data(config)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_run(config, Path(tmp) / "run", Hooks(), dataset=dataset)
        model = load_model(Path(tmp) / "run" / "model.keras")
    images = dataset.x_train[:config.limit_train]
    batchnorm.recompute_statistics(model, images)  # the first call builds and traces
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        batchnorm.recompute_statistics(model, images)
        seconds.append(time.perf_counter() - started)
    epoch = statistics.median(r["seconds"] for r in result.epochs)
    recompute = statistics.median(seconds)
    return {"recompute_s": round(recompute, 3), "epoch_s": round(epoch, 2),
            "share_of_epoch": round(recompute / epoch, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for network in NETWORKS:
        print(json.dumps({"network": network, **measure(network, args.data_dir, args.repeats)}),
              flush=True)


if __name__ == "__main__":
    main()
