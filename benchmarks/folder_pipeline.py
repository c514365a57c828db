"""Input pipeline speed: JPEG files to batches, tfcnn's streamed folder against Keras's
`image_dataset_from_directory` on the same files, side by side in one run.

    python benchmarks/folder_pipeline.py ../shared/datasets/fashion_photos/train --size 48

Each round reads every file once into shuffled batches of `--batch-size` (the training
pipeline: `tfcnn.data.pipeline.train_batches` over `ImageFiles`, decoded by Pillow in
parallel; Keras: `tf.io.decode_image` and `tf.image.resize` in its own tf.data graph), the
two alternating; prints the median images/s of `--rounds` rounds of each. Both give
float32 batches of size H×W×3 in [0, 1] (Keras's are 0-255, scaled here like tfcnn's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def tfcnn_batches(root: Path, size: int, batch_size: int, epoch: int):
    """One epoch of tfcnn's streamed training batches."""
    from tfcnn.data import pipeline
    from tfcnn.data.folders import load_image_folder

    data = load_image_folder(root, image_size=(size, size), grayscale=False, test_split=0,
                             stream=True).dataset
    examples = pipeline.train_examples(data.x_train, data.y_train)
    return pipeline.train_batches(examples, batch_size, len(data.y_train), 1, epoch)


def keras_batches(root: Path, size: int, batch_size: int, epoch: int):
    """One epoch of Keras's directory dataset, scaled to [0, 1] and prefetched."""
    import keras
    import tensorflow as tf

    dataset = keras.utils.image_dataset_from_directory(
        root, image_size=(size, size), batch_size=batch_size, shuffle=True, seed=epoch,
        verbose=False)
    return dataset.map(lambda x, y: (x / 255.0, y)).prefetch(tf.data.AUTOTUNE)


def images_per_second(make, root: Path, size: int, batch_size: int, epoch: int) -> float:
    started = time.perf_counter()
    count = sum(int(x.shape[0]) for x, _ in make(root, size, batch_size, epoch))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a folder with one sub-folder per class")
    parser.add_argument("--size", type=int, default=48, help="image side, pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rates: dict[str, list[float]] = {"tfcnn": [], "keras": []}
    makers = {"tfcnn": tfcnn_batches, "keras": keras_batches}
    for make in makers.values():  # warm-up: imports, tracing, the page cache
        images_per_second(make, args.root, args.size, args.batch_size, 0)
    for epoch in range(1, args.rounds + 1):
        for name, make in makers.items():
            rates[name].append(images_per_second(make, args.root, args.size,
                                                 args.batch_size, epoch))
    print(f"{args.root} at {args.size}x{args.size}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, median of {args.rounds} rounds (each reads every file):")
    for name, values in rates.items():
        print(f"  {name:<6} {statistics.median(values):8,.0f} images/s  "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    ratio = statistics.median(rates["tfcnn"]) / statistics.median(rates["keras"])
    print(f"  tfcnn / keras: {ratio:.2f}")


if __name__ == "__main__":
    main()
