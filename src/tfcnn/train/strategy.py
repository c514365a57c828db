"""tf.distribute for `tfcnn train --strategy`: choosing, creating and using a strategy.

This module owns what is specific to training on several devices or machines:
- reading `TF_CONFIG` (TensorFlow's standard cluster description) and deciding what
  `auto|default|mirrored|multi-worker` means on this machine;
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
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcnn.config import STRATEGIES
from tfcnn.errors import EXIT_PARTIAL, ConfigError, RunDirError, TfcnnError

CLUSTER_JOBS = ("chief", "worker")
# How long a worker waits for all the others to start (seconds); TFCNN_CLUSTER_WAIT overrides.
CLUSTER_WAIT_SECONDS = 300


class WorkerLostError(TfcnnError):
    """Multi-worker training lost a worker, or the cluster never formed: restart all workers."""

    exit_code = EXIT_PARTIAL  # not bad input: a retry (after a restart) can succeed


@dataclass(frozen=True)
class Cluster:
    """This process's place in the cluster that TF_CONFIG describes."""

    jobs: Mapping[str, Sequence[str]]  # job name -> "host:port" addresses
    task_type: str
    task_index: int

    @property
    def workers(self) -> int:
        return sum(len(self.jobs.get(job, ())) for job in CLUSTER_JOBS)

    @property
    def rank(self) -> int:
        """0 for the chief: the "chief" task if there is one, else worker 0 (TF's rule)."""
        before = len(self.jobs.get("chief", ())) if self.task_type == "worker" else 0
        return before + self.task_index

    @property
    def chief(self) -> bool:
        return self.rank == 0


def read_tf_config(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster in TF_CONFIG, or None when TF_CONFIG is unset or names no cluster."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("TF_CONFIG: expected a JSON object with 'cluster' and 'task'")
    jobs = data.get("cluster")
    if not jobs:
        return None
    if not isinstance(jobs, dict) or not all(
            isinstance(addresses, list) and addresses
            and all(isinstance(a, str) and a for a in addresses) for addresses in jobs.values()):
        raise ConfigError("TF_CONFIG: 'cluster' must map job names to lists of 'host:port'")
    unsupported = sorted(set(jobs) - set(CLUSTER_JOBS))
    if unsupported:
        raise ConfigError(f"TF_CONFIG: job {', '.join(map(repr, unsupported))} is not supported "
                          "(multi-worker training uses 'chief' and 'worker' jobs)")
    if len(jobs.get("chief", ())) > 1:
        raise ConfigError("TF_CONFIG: the 'chief' job has more than one task")
    task = data.get("task")
    if not isinstance(task, dict):
        raise ConfigError("TF_CONFIG: 'task' must be an object like {\"type\": \"worker\", "
                          "\"index\": 0}")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise ConfigError(f"TF_CONFIG: task type {task_type!r} is not a job of the cluster "
                          f"({', '.join(jobs)})")
    if not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index < len(jobs[task_type])):
        raise ConfigError(f"TF_CONFIG: task index {index!r} is out of range for job "
                          f"{task_type!r} ({len(jobs[task_type])} task(s))")
    return Cluster({job: tuple(addresses) for job, addresses in jobs.items()}, task_type, index)


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
    from tfcnn.tfenv import import_tensorflow

    cluster = read_tf_config(environ)
    if setting in ("multi-worker", "auto") and cluster is not None:
        choose_strategy(setting, cluster, 0)
        return Distribution("multi-worker", _multi_worker_strategy(cluster, environ), cluster)
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    kind = choose_strategy(setting, cluster, len(gpus))
    if kind == "default":
        return Distribution("default")
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    return Distribution("mirrored", tf.distribute.MirroredStrategy(list(devices)))


def _multi_worker_strategy(cluster: Cluster, environ: Mapping[str, str] | None) -> Any:
    raw = (os.environ if environ is None else environ).get("TFCNN_CLUSTER_WAIT", "")
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ConfigError(f"TFCNN_CLUSTER_WAIT: expected a positive number of seconds, got {raw!r}")
    wait = int(raw) if raw else CLUSTER_WAIT_SECONDS
    from tfcnn import tfenv

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = os.environ.get("TFCNN_TF_LOGS") != "1" and "tensorflow" not in sys.modules
    # tfenv's own hiding of TensorFlow's start-up lines; import_tensorflow() itself cannot be
    # used here, as it initialises the devices, after which the strategy cannot be created.
    with tfenv.stderr_to_devnull() if quiet else contextlib.nullcontext():
        import tensorflow as tf

        _bound_cluster_start(cluster, wait)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:  # "Collective ops must be configured at program startup"
            raise ConfigError(f"strategy: multi-worker must be set up before TensorFlow starts, "
                              f"in a fresh process ({exc})") from None
        except tf.errors.OpError as exc:
            raise WorkerLostError(f"TF_CONFIG: not all {cluster.workers} workers started within "
                                  f"{wait} s (set TFCNN_CLUSTER_WAIT to wait longer; "
                                  f"{type(exc).__name__})") from None


def _bound_cluster_start(cluster: Cluster, seconds: int) -> None:
    """Make the strategy's wait for the other workers end after `seconds`.

    By default it waits forever, blocking in C++ where neither Ctrl-C nor SIGTERM ends it.
    This sets up TensorFlow's coordination service the way MultiWorkerMirroredStrategy would,
    plus a registration deadline; the strategy keeps a service that is already configured.
    These are TensorFlow internals: if they change, the strategy's own defaults apply.
    """
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
        from tensorflow.python.training import server_lib
    except ImportError:
        return
    spec = server_lib.ClusterSpec({job: list(a) for job, a in cluster.jobs.items()})
    ctx = context.context()
    if ctx.coordination_service is not None:
        return
    ctx.configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        cluster_register_timeout_in_ms=seconds * 1000,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(a))
                          for job, a in cluster.jobs.items()])
    with contextlib.suppress(AttributeError, ValueError):
        # Without the barrier the registration deadline is not enforced (TF 2.21).
        ctx.coordination_service.cluster_register_with_barrier = True


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
