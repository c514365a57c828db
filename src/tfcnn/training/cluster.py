"""Multi-worker clusters: reading TF_CONFIG and forming the cluster's strategy.

TF_CONFIG is TensorFlow's standard description of a cluster and of this process's task in
it. `MultiWorkerMirroredStrategy` must be created before TensorFlow sets up its devices,
and by default it waits forever for the other workers; `multi_worker_strategy` bounds
that wait (TFCNN_CLUSTER_WAIT seconds) and turns the failures into one-line errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tfcnn.core.errors import EXIT_PARTIAL, ConfigError, TfcnnError

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


def multi_worker_strategy(cluster: Cluster, environ: Mapping[str, str] | None) -> Any:
    raw = (os.environ if environ is None else environ).get("TFCNN_CLUSTER_WAIT", "")
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ConfigError(f"TFCNN_CLUSTER_WAIT: expected a positive number of seconds, got {raw!r}")
    wait = int(raw) if raw else CLUSTER_WAIT_SECONDS
    from tfcnn.core import tfenv

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
