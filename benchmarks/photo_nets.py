"""Training step time of networks for photos at 64x64 RGB: the notation's photo layers
(residual blocks, same padding, separable convolutions, GAP) against the issue's baseline.

    python benchmarks/photo_nets.py [--batch 64] [--steps 12] [--rounds 3] [--size 64]
                                    [--only residual ...] [--jit] [--fit]

`--jit` adds each network's step compiled by XLA; `--fit` the same network trained by plain
Keras `compile` + `fit` (the peer: its steps are timed `--steps` at a time).

Each network gets one compiled training step (forward, loss, gradients, Adam update: what
training/loop.py does, without augmentation) on a fixed random batch. After a warm-up, the
networks take turns, `--steps` steps each per round, so a drift in the machine's load hits all
alike; printed are the medians per step of wall time and of this process's CPU time (all
threads), and the parameter counts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

NETWORKS = {
    "photo preset": "32C3p-BN-R32-P2-R64S2-R128S2-GAP-D10",
    "photo preset, bf16": "32C3p-BN-R32-P2-R64S2-R128S2-GAP-D10 mixed_bfloat16",
    "baseline (issue 17)": "32C3-BN-P2-64C3-BN-P2-128C3-BN-P2-D10",
    "same padding + GAP": "32C3p-BN-P2-64C3p-BN-P2-128C3p-BN-P2-GAP-D10",
    "separable + GAP": "32C3p-BN-P2-64SC3p-BN-P2-128SC3p-BN-P2-GAP-D10",
    "residual + GAP": "32C3p-BN-P2-R32-R64S2-R128S2-GAP-D10",
    "MobileNetV3Small": "keras:MobileNetV3Small",
    "residual + GAP, bf16": "32C3p-BN-P2-R32-R64S2-R128S2-GAP-D10 mixed_bfloat16",
    "MobileNetV3Small, bf16": "keras:MobileNetV3Small mixed_bfloat16",
}


def _model(network: str, shape: tuple[int, int, int]):
    notation, _, precision = network.partition(" ")
    classes = tuple(str(n) for n in range(10))
    precision = precision or "float32"
    if notation.startswith("keras:"):
        from tfcnn.models.backbones import build_backbone_model
        return build_backbone_model(notation, shape, classes, seed=0, precision=precision)
    from tfcnn.models.network import build_model
    return build_model(notation, shape, classes, seed=0, precision=precision)


def _fit_step(model, images, labels, steps: int):
    """Plain Keras: `compile` + `fit` of `steps` batches a call (the peer of the loop)."""
    import keras
    import tensorflow as tf

    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()

    class Loss:
        def numpy(self):
            return 0.0

    def step(_images, _labels):  # one call: `steps` steps through fit
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return Loss()

    return step


def _step(model, jit: bool = False):
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=None,
                        help="networks whose name contains one of these (default: all)")
    parser.add_argument("--jit", action="store_true",
                        help="also each network's step compiled by XLA (jit_compile=True)")
    parser.add_argument("--fit", action="store_true",
                        help="also each network under plain Keras fit (the peer ratio)")
    args = parser.parse_args()
    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, args.batch).astype(np.int32)
    runs = {}
    chosen = {name: network for name, network in NETWORKS.items()
              if args.only is None or any(part in name for part in args.only)}
    arms = [("", lambda m: _step(m), 1)]
    arms += [(", XLA", lambda m: _step(m, jit=True), 1)] if args.jit else []
    arms += [(", Keras fit", lambda m: _fit_step(m, images, labels, args.steps), args.steps)
             ] if args.fit else []
    for name, network in chosen.items():
        for suffix, make, per_call in arms:
            model = _model(network, shape)
            step = make(model)
            for _ in range(2):
                step(images, labels).numpy()  # trace and warm up
            runs[name + suffix] = (model.count_params(), step, [], [], per_call)
    for _ in range(args.rounds):
        for _params, step, walls, cpus, per_call in runs.values():
            for _ in range(args.steps // per_call):
                wall, cpu = time.perf_counter(), time.process_time()
                step(images, labels).numpy()
                walls.append((time.perf_counter() - wall) / per_call)
                cpus.append((time.process_time() - cpu) / per_call)
    print(f"batch {args.batch}, {args.size}x{args.size}x3, {args.rounds}x{args.steps} steps")
    print(f"{'network':34} {'params':>10} {'wall ms/step':>13} {'CPU ms/step':>12} "
          f"{'images/s':>9}")
    for name, (params, _step_fn, walls, cpus, _per_call) in runs.items():
        wall = statistics.median(walls)
        print(f"{name:34} {params:>10,} {wall * 1000:>13.0f} "
              f"{statistics.median(cpus) * 1000:>12.0f} {args.batch / wall:>9.0f}")


if __name__ == "__main__":
    main()
