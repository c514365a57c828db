"""Batch inference throughput: a trained model over the 10,000 MNIST test images.

    python benchmarks/predict_speed.py RUN_DIR|MODEL --data-dir ../shared/datasets

Times `probabilities()` (logits + explicit softmax) over the test set in batches, after one
warm-up pass that traces the function, and prints the median of several passes in images/s,
for a few batch sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="run directory or .keras file")
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="100,1000,10000")
    args = parser.parse_args()

    import tensorflow as tf

    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.data.locate import load_dataset
    from tfcnn.models.network import load_model

    model = load_model(resolve_model_file(args.source))
    data = load_dataset(model.dataset or "mnist", args.data_dir)
    images = tf.constant(data.x_test[..., None].astype("float32") / 255.0)

    @tf.function(reduce_retracing=True)
    def predict(batch: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(model(batch, training=False))

    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        batches = [images[i:i + batch_size] for i in range(0, len(data.x_test), batch_size)]
        for batch in batches:  # trace every batch shape once
            predict(batch)
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for batch in batches:
                predict(batch).numpy()
            seconds.append(time.perf_counter() - started)
        rate = len(data.x_test) / statistics.median(seconds)
        print(f"batch {batch_size:>6}: {rate:,.0f} images/s (median of {args.repeats} passes "
              f"over {len(data.x_test):,} images; min {min(seconds):.3f} s, "
              f"max {max(seconds):.3f} s)")


if __name__ == "__main__":
    main()
