"""tf.distribute for `tfcnn train --strategy`: choosing, creating and using a strategy.

This module owns what is specific to training on several devices or machines:
- deciding what `auto|default|mirrored|multi-worker` means on this machine (the cluster,
  from `TF_CONFIG`, is read by `tfcnn.training.cluster`);
- creating the strategy. `MultiWorkerMirroredStrategy` must exist before TensorFlow sets up
  its devices, so `tfcnn train` calls `create_distribution` before anything else does;
- what the loop needs under a strategy: datasets sharded by data, the loss scaled by the
  global batch, batch-norm statistics kept equal on every replica, every worker agreeing
  on when to stop and where to start;
- where each worker writes: the chief writes the run directory; every other worker writes
  the same files to a temporary directory that is removed at the end. They must write too:
  saving reads cross-replica values with collective ops, which every worker has to join.
The default strategy is no strategy at all: `Distribution.strategy` is None and the loop
runs its plain single-device code, as fast as before.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcnn.core.config import STRATEGIES
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.training.cluster import Cluster, WorkerLostError, multi_worker_strategy, read_tf_config


def choose_strategy(setting: str, cluster: Cluster | None, gpus: int) -> str:
    """What `--strategy SETTING` means here: "default", "mirrored" or "multi-worker"."""
    if setting not in STRATEGIES:
        raise ConfigError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {setting!r}")
    if setting == "auto":
        return "multi-worker" if cluster else "mirrored" if gpus > 1 else "default"
    if setting == "multi-worker" and cluster is None:
        raise ConfigError("strategy: multi-worker needs TF_CONFIG naming the cluster and this "
                          "task (see docs/distributed.md)")
    return setting


@dataclass
class Distribution:
    """The strategy a run trains under, and this process's role in it."""

    kind: str                         # "default", "mirrored" or "multi-worker"
    strategy: Any = None              # tf.distribute.Strategy; None: the plain one-device code
    cluster: Cluster | None = None    # multi-worker only
    _functions: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    @property
    def chief(self) -> bool:
        return self.cluster is None or self.cluster.chief

    @property
    def multi_worker(self) -> bool:
        return self.cluster is not None

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return "default (one device)"
        if self.cluster is None:
            devices = self.strategy.extended.worker_devices
            return f"mirrored over {len(devices)} device(s): {', '.join(devices)}"
        c = self.cluster
        return (f"multi-worker, {c.workers} workers, {self.replicas} replicas; this is "
                f"{c.task_type} {c.task_index}" + (" (chief)" if c.chief else ""))

    def worker_dir(self, run_path: Path) -> Path:
        """Where this process writes: the run directory on the chief, else a new temp dir."""
        if self.chief:
            return run_path
        assert self.cluster is not None
        return Path(tempfile.mkdtemp(prefix=f"tfcnn-worker{self.cluster.rank}-"))

    def remove_worker_dir(self, path: Path) -> None:
        """Delete a non-chief worker's temporary output (its copy of what the chief keeps)."""
        if not self.chief:
            shutil.rmtree(path, ignore_errors=True)

    def _reduce_max(self, values: list[float]) -> list[float]:
        """Element-wise maximum over all replicas of every worker (a collective op)."""
        import tensorflow as tf

        if "max" not in self._functions:
            strategy = self.strategy

            def gathered_max(local: tf.Tensor) -> tf.Tensor:
                context = tf.distribute.get_replica_context()  # (ReduceOp has no MAX)
                return tf.reduce_max(context.all_gather(local[tf.newaxis], axis=0), axis=0)

            @tf.function
            def reduce_max(local: tf.Tensor) -> tf.Tensor:
                per_replica = strategy.run(gathered_max, args=(local,))
                return strategy.experimental_local_results(per_replica)[0]

            self._functions["max"] = reduce_max
        # float64 holds seeds (< 2**31), epochs, steps and signal numbers exactly.
        return self._functions["max"](tf.constant(values, tf.float64)).numpy().tolist()

    def chief_seed(self, seed: int) -> int:
        """The chief's seed on every worker (each drew its own when --seed was not given)."""
        if not self.multi_worker:
            return seed
        return int(self._reduce_max([float(seed) if self.chief else -1.0])[0])

    def agree_stop(self, signum: int) -> int:
        """The signal any worker was asked to stop for, so all stop after the same step."""
        return int(self._reduce_max([float(signum)])[0])

    def check_same_start(self, epoch: int, step: int, run_path: Path) -> None:
        """Every worker must resume from the chief's checkpoint, or they would fall out of step."""
        if not self.multi_worker:
            return
        high = self._reduce_max([epoch, step, -epoch, -step])
        if high[:2] != [-high[2], -high[3]]:
            raise RunDirError(f"{run_path}: the workers restored different checkpoints (epochs "
                              f"{-high[2]:.0f} to {high[0]:.0f}); every worker must see the "
                              "chief's run directory (shared storage, see docs/distributed.md)")

    @contextlib.contextmanager
    def worker_errors(self, run_path: Path) -> Iterator[None]:
        """Turn a collective op failing (a worker died or hung) into WorkerLostError."""
        if not self.multi_worker:
            yield
            return
        import tensorflow as tf

        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise WorkerLostError(f"lost contact with another worker ({type(exc).__name__}: "
                                  f"{first[:200]}); restart every worker with: tfcnn train "
                                  f"--resume {run_path}") from None


def create_distribution(setting: str, devices: Sequence[str] | None = None,
                        environ: Mapping[str, str] | None = None) -> Distribution:
    """Create the strategy `--strategy SETTING` asks for; TensorFlow is imported quietly.

    `devices` (mirrored only) replaces the default: the local GPUs, else every CPU device
    TensorFlow knows (one, unless split into logical devices, as the tests do).
    For multi-worker, call this before anything else initialises TensorFlow.
    """
    from tfcnn.core.tfenv import import_tensorflow

    cluster = read_tf_config(environ)
    if setting in ("multi-worker", "auto") and cluster is not None:
        choose_strategy(setting, cluster, 0)
        return Distribution("multi-worker", multi_worker_strategy(cluster, environ), cluster)
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    kind = choose_strategy(setting, cluster, len(gpus))
    if kind == "default":
        return Distribution("default")
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    return Distribution("mirrored", tf.distribute.MirroredStrategy(list(devices)))


# --- pieces of the training step under a strategy (called by loop.py) ----------------------


def distribute_dataset(strategy: Any, batches: Any) -> Any:
    """Global batches split across replicas; workers shard by data (each keeps its part)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(batches.with_options(options))


def global_mean(losses: Any) -> Any:
    """This replica's share of the mean loss over the whole global batch.

    The optimizer sums gradients across replicas, so each replica divides its loss sum by
    the global batch size (all-reduced, so that a last, smaller batch is counted right).
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    global_batch = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.size(losses))
    return tf.nn.compute_average_loss(losses, global_batch_size=global_batch)


def replicated_steps(strategy: Any, train_step: Callable[..., None],
                     test_step: Callable[..., None], statistics: list[Any]
                     ) -> tuple[Callable[..., None], Callable[..., None]]:
    """The loop's (train_steps, test_step) functions running the steps on every replica.

    `statistics` (batch-norm moving averages) are updated by each replica from its own part
    of the batch, then averaged across replicas after every step (as Keras 2 did with
    aggregation="mean"): every replica holds the same values, and several steps per call
    give the same numbers as one.
    """
    import tensorflow as tf

    def step(images: tf.Tensor, labels: tf.Tensor) -> None:
        train_step(images, labels)
        if statistics:
            context = tf.distribute.get_replica_context()
            local = [tf.identity(v.value) for v in statistics]  # this replica's values
            means = context.all_reduce(tf.distribute.ReduceOp.MEAN, local)
            for variable, mean in zip(statistics, means, strict=True):
                variable.assign(mean)

    @tf.function
    def train_steps(batches: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            images, labels = next(batches)
            strategy.run(step, args=(images, labels))

    @tf.function(reduce_retracing=True)
    def test_steps(images: Any, labels: Any) -> None:
        strategy.run(test_step, args=(images, labels))

    return train_steps, test_steps
