"""tf.distribute training: TF_CONFIG and the strategy choice (fast, no TensorFlow); then, slow,
MirroredStrategy over two logical CPUs against one device, and two worker processes on
127.0.0.1 (MultiWorkerMirroredStrategy): a full run, a killed worker, a Ctrl-C.

Workers run `python -m tfcnn train` with TF_CONFIG, one intra-op thread each (2 cores). To see
the non-chief's weights, its process keeps a copy of its temporary model.keras before the
directory is removed (WORKER_MAIN below); nothing in tfcnn is there for tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import REPO, load_weights, run_tfcnn, same_weights
from tfcnn.core.errors import ConfigError
from tfcnn.training.cluster import Cluster, read_tf_config
from tfcnn.training.strategy import choose_strategy


def tf_config(cluster: dict, task_type: str = "worker", index: int = 0) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type,
                                                                 "index": index}})}


# --- TF_CONFIG and the choice of strategy ---------------------------------------------------


def test_no_tf_config_or_no_cluster_means_no_cluster():
    assert read_tf_config({}) is None
    assert read_tf_config({"TF_CONFIG": "  "}) is None
    assert read_tf_config({"TF_CONFIG": '{"cluster": {}, "task": {}}'}) is None


def test_roles_chief_job_or_worker_zero_is_the_chief():
    two = {"worker": ["a:1", "b:2"]}
    assert read_tf_config(tf_config(two, "worker", 0)).chief
    second = read_tf_config(tf_config(two, "worker", 1))
    assert (second.chief, second.rank, second.workers) == (False, 1, 2)
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    assert read_tf_config(tf_config(with_chief, "chief", 0)).chief
    worker0 = read_tf_config(tf_config(with_chief, "worker", 0))
    assert (worker0.chief, worker0.rank, worker0.workers) == (False, 1, 3)


@pytest.mark.parametrize("raw", [
    "{not json", "[1, 2]", '{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}',
    '{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
    '{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
])
def test_malformed_tf_config_is_a_config_error_naming_it(raw):
    with pytest.raises(ConfigError, match=r"^TF_CONFIG: "):
        read_tf_config({"TF_CONFIG": raw})


def test_auto_picks_multi_worker_with_a_cluster_then_mirrored_with_gpus_then_default():
    cluster = Cluster({"worker": ("a:1", "b:2")}, "worker", 0)
    assert choose_strategy("auto", cluster, 0) == "multi-worker"
    assert choose_strategy("auto", None, 2) == "mirrored"
    assert choose_strategy("auto", None, 1) == "default"
    assert choose_strategy("mirrored", None, 0) == "mirrored"
    assert choose_strategy("default", cluster, 4) == "default"
    with pytest.raises(ConfigError, match=r"^strategy: multi-worker needs TF_CONFIG"):
        choose_strategy("multi-worker", None, 0)
    with pytest.raises(ConfigError, match=r"^strategy: "):
        choose_strategy("parameter-server", None, 0)


def test_cli_reports_a_malformed_tf_config_in_one_line_before_loading_tensorflow(tmp_path):
    done = run_tfcnn("train", "--out", str(tmp_path / "run"), timeout=60,
                     env={"TF_CONFIG": '{"cluster": '})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("tfcnn: error: TF_CONFIG: not valid JSON")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_worker_whose_peers_never_start_gives_up_after_the_cluster_wait(tmp_path):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    started = time.monotonic()
    done = run_tfcnn("train", "--out", str(tmp_path / "run"), timeout=90,
                     env={**tf_config({"worker": addresses}), "TFCNN_CLUSTER_WAIT": "3"})
    assert done.returncode == 1, done.stderr[-2000:]
    # (TensorFlow's coordination agent logs its own complaint as the process exits.)
    assert done.stderr.startswith(
        "tfcnn: error: TF_CONFIG: not all 2 workers started within 3 s (set TFCNN_CLUSTER_WAIT "
        "to wait longer; DeadlineExceededError)\n")
    assert time.monotonic() - started < 60


# --- MirroredStrategy over two logical CPU devices (its own process) -------------------------

# Logical devices must be set before TensorFlow initialises, hence a fresh process. The model
# has no batch norm or dropout: those depend on how a batch is split (per-replica statistics,
# per-replica masks), everything else must not. 200 images: the last batch (8) is split too.
MIRRORED_MAIN = """
import json, sys
from pathlib import Path
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from support import tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run
out = Path(sys.argv[1])
config = TrainConfig(model="16C3-P2-D10", epochs=2, batch_size=32, seed=3, lr=0.01,
                     steps_per_call=4, ema=0.9)  # the weight average is replicated too
seen = {}
for name, strategy, epochs in [("one", "default", 2), ("two", "mirrored", 2),
                               ("resumed", "mirrored", 1)]:
    train_run(config.replace(strategy=strategy, epochs=epochs), out / name, Hooks(),
              dataset=tiny_digits(200, 64),
              on_start=lambda info, n=name: seen.update({n: info.distribution}))
train_run(config.replace(strategy="mirrored"), out / "resumed", Hooks(), resume=True,
          dataset=tiny_digits(200, 64))
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_the_weights_one_device_does(tmp_path):
    done = subprocess.run([sys.executable, "-c", MIRRORED_MAIN, str(tmp_path), str(REPO / "tests")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["one"] is None and "mirrored over 2 device(s)" in seen["two"]
    one, two = (load_weights(tmp_path / name / "model.keras") for name in ("one", "two"))
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    epochs = [json.loads((tmp_path / n / "metrics.json").read_text())["epochs"]
              for n in ("one", "two")]
    for a, b in zip(*epochs, strict=True):  # metrics aggregated over both replicas
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
    # Resume under the strategy: the same weights as the run that never stopped.
    assert same_weights(two, load_weights(tmp_path / "resumed" / "model.keras"))


# --- Two worker processes on 127.0.0.1 -------------------------------------------------------

# A non-chief writes to a temporary directory that train_run removes; this keeps its model
# and config.json.
WORKER_MAIN = """
import shutil, sys
from pathlib import Path
from tfcnn.training.strategy import Distribution
keep = Path(sys.argv[1])
remove = Distribution.remove_worker_dir
def remove_keeping_the_model(self, path):
    if not self.chief and (path / "model.keras").exists():
        for name in ("model.keras", "config.json"):
            shutil.copy(path / name, keep / name)
        (keep / "removed").write_text(str(path))
    remove(self, path)
Distribution.remove_worker_dir = remove_keeping_the_model
from tfcnn.cli import main
sys.exit(main(sys.argv[2:]))
"""
# ~63 steps an epoch of about 1 s: long enough to stop inside epoch 2, short enough for CI.
# No --seed: the first run checks that the workers agree on one; the others reuse its seed.
ARGS = ("--model", "8C3-P2-BN-DO20-D10", "--epochs", "4", "--limit-train", "2000",
        "--limit-test", "500")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Workers:
    """Two `tfcnn train` processes forming one cluster; always killed at the end.

    Their output goes to files, not pipes: a worker blocked on a full pipe would stall both.
    """

    def __init__(self, keep: Path) -> None:
        self.addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
        self.keep = keep
        # The non-chief's temporary directory goes here: a killed worker cannot remove its own.
        self.tmp = keep / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[tuple[Path, Path]] = []
        self.starts = 0

    def start(self, *args: str) -> None:
        self.starts += 1
        self.procs, self.logs = [], []
        for index in range(2):
            env = {**os.environ, **tf_config({"worker": self.addresses}, "worker", index),
                   "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2",
                   "OMP_NUM_THREADS": "1", "TFCNN_CLUSTER_WAIT": "60", "TMPDIR": str(self.tmp)}
            logs = (self.keep / f"worker{index}-{self.starts}.out",
                    self.keep / f"worker{index}-{self.starts}.err")
            with logs[0].open("w") as out, logs[1].open("w") as err:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", WORKER_MAIN, str(self.keep), "train", *args],
                    env=env, stdout=out, stderr=err, text=True))
            self.logs.append(logs)

    def wait(self, index: int, timeout: float = 120) -> tuple[int, str, str]:
        returncode = self.procs[index].wait(timeout=timeout)
        out, err = (path.read_text() for path in self.logs[index])
        return returncode, out, err

    def finish(self, timeout: float = 120) -> list[tuple[int, str, str]]:
        return [self.wait(i, timeout) for i in range(len(self.procs))]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


# Generous limits: they only bound a hang, and a loaded 2-core machine can be several times slower.
def wait_for(path: Path, workers: Workers, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for index, proc in enumerate(workers.procs):
            assert proc.poll() is None, f"a worker ended early: {workers.wait(index)[2][-2000:]}"
        assert time.monotonic() < deadline, f"no {path.name} in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def two_worker_run(shared_datasets_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("multi-worker")
    workers = Workers(root / "kept")
    try:
        workers.start(*ARGS, "--data-dir", str(shared_datasets_dir), "--out", str(root / "run"))
        results = workers.finish()
    finally:
        workers.kill()
    seed = json.loads((root / "run" / "config.json").read_text())["seed"]
    return {"run": root / "run", "kept": root / "kept", "results": results, "seed": str(seed)}


@pytest.mark.slow
def test_two_workers_finish_with_identical_weights_and_the_chief_writes_the_run(two_worker_run):
    (rc0, out0, err0), (rc1, out1, err1) = two_worker_run["results"]
    assert (rc0, rc1) == (0, 0), err0[-2000:] + err1[-2000:]
    run, kept = two_worker_run["run"], two_worker_run["kept"]
    assert "Strategy: multi-worker, 2 workers, 2 replicas; this is worker 0 (chief)" in out0
    assert [ln for ln in out0.splitlines() if ln.startswith("Epoch ")][-1].startswith("Epoch 4/4")
    assert "Epoch" not in out1 and out1.startswith("Worker: multi-worker")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["test_accuracy"] > 0.5
    assert (run / "model.keras").is_file() and (run / "checkpoints" / "ckpt-4.index").is_file()
    # The other worker saved the same model to a temporary directory, since removed.
    assert same_weights(load_weights(run / "model.keras"), load_weights(kept / "model.keras"))
    worker_config = json.loads((kept / "config.json").read_text())
    assert worker_config["seed"] == int(two_worker_run["seed"])  # the chief's random seed
    assert not Path((kept / "removed").read_text()).exists()


@pytest.mark.slow
def test_a_killed_worker_then_a_restart_resumes_from_the_last_checkpoint(
        two_worker_run, shared_datasets_dir, tmp_path):
    run = tmp_path / "run"
    workers = Workers(tmp_path / "kept")
    try:
        workers.start(*ARGS, "--seed", two_worker_run["seed"], "--data-dir",
                      str(shared_datasets_dir), "--out", str(run))
        wait_for(run / "checkpoints" / "ckpt-1.index", workers)
        workers.procs[1].kill()
        rc, _, err = workers.wait(0, timeout=90)  # the chief notices within seconds
        assert rc == 1 and "lost contact with another worker" in err, err[-2000:]
        assert f"--resume {run}" in err.strip().splitlines()[-1]
        workers.kill()
        finished = json.loads((run / "metrics.json").read_text())["epochs"]
        assert 1 <= len(finished) < 4
        workers.start("--resume", str(run))
        (rc0, out0, err0), (rc1, _, err1) = workers.finish()
    finally:
        workers.kill()
    assert (rc0, rc1) == (0, 0), err0[-2000:] + err1[-2000:]
    assert f"Resuming from {run}/checkpoints/ckpt-{len(finished)}" in out0
    assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"]] == [
        1, 2, 3, 4]
    weights = load_weights(run / "model.keras")
    assert same_weights(weights, load_weights(tmp_path / "kept" / "model.keras"))
    assert same_weights(weights, load_weights(two_worker_run["run"] / "model.keras"))


@pytest.mark.slow
def test_ctrl_c_on_one_worker_stops_both_at_the_same_step_and_resumes_exactly(
        two_worker_run, shared_datasets_dir, tmp_path):
    run = tmp_path / "run"
    workers = Workers(tmp_path / "kept")
    try:
        import tensorflow as tf

        # A stop seen before an epoch's first call is saved at step 0, an epoch boundary; on a
        # busy machine the set-up after a checkpoint can outlast the pause, so up to three
        # tries, each one epoch later (every stop and resume must keep the run exact).
        for attempt in range(3):
            latest = max((int(p.name.split(".")[0][5:])
                          for p in (run / "checkpoints").glob("ckpt-*.index")), default=0)
            if attempt == 0:
                workers.start(*ARGS, "--seed", two_worker_run["seed"], "--data-dir",
                              str(shared_datasets_dir), "--out", str(run), "--steps-per-call", "5")
            else:
                workers.start("--resume", str(run))
            wait_for(run / "checkpoints" / f"ckpt-{latest + 1}.index", workers)
            time.sleep(0.2 * (attempt + 1))
            workers.procs[1].send_signal(signal.SIGINT)  # the non-chief: the chief must follow
            (rc0, _, err0), (rc1, _, err1) = workers.finish(timeout=240)
            assert (rc0, rc1) == (130, 130), err0[-2000:] + err1[-2000:]
            assert err0.strip().splitlines()[-1].startswith("tfcnn: interrupted in epoch ")
            assert "interrupted with the other workers" in err1
            step = tf.train.load_variable(tf.train.latest_checkpoint(str(run / "checkpoints")),
                                          "step/.ATTRIBUTES/VARIABLE_VALUE")
            if step > 0:
                break
        assert 0 < step < 63, err0[-600:]  # saved mid-epoch
        workers.start("--resume", str(run))
        (rc0, _, err0), (rc1, _, err1) = workers.finish()
    finally:
        workers.kill()
    assert (rc0, rc1) == (0, 0), err0[-2000:] + err1[-2000:]
    assert same_weights(load_weights(run / "model.keras"),
                        load_weights(two_worker_run["run"] / "model.keras"))
