"""End-to-end training in fresh processes on real MNIST: repeatability, kill/resume, Ctrl-C.

These are the slow tests: each trains a few short epochs on the first 4,000 MNIST images.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import load_weights, run_tfcnn, same_weights

pytestmark = pytest.mark.slow

# ~125 steps an epoch: long enough to interrupt inside epoch 2, short enough for CI.
ARGS = ("train", "--model", "16C3-P2-16C3-P2-BN-DO20-D32-D10", "--epochs", "3", "--seed", "11",
        "--limit-train", "4000", "--limit-test", "500")


def train_args(data_dir: Path, out: Path) -> list[str]:
    return [*ARGS, "--data-dir", str(data_dir), "--out", str(out)]


@pytest.fixture(scope="module")
def baseline(shared_datasets_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    done = run_tfcnn(*train_args(shared_datasets_dir, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def start_training(data_dir: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tfcnn", *train_args(data_dir, out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_first_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (out / "checkpoints" / "ckpt-1.index").exists():
        assert proc.poll() is None, f"training ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)


def test_same_seed_same_weights_and_metrics_in_a_new_process(baseline, shared_datasets_dir,
                                                             tmp_path):
    done = run_tfcnn(*train_args(shared_datasets_dir, tmp_path / "again"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(load_weights(baseline / "model.keras"),
                        load_weights(tmp_path / "again" / "model.keras"))

    def without_time(run: Path) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "seconds"}
                for e in json.loads((run / "metrics.json").read_text())["epochs"]]

    assert without_time(baseline) == without_time(tmp_path / "again")


def test_output_lists_the_tutorials_figures_each_epoch(baseline, shared_datasets_dir, tmp_path):
    done = run_tfcnn(*train_args(shared_datasets_dir, tmp_path / "out"), "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    epoch_lines = [ln for ln in lines if ln.startswith("Epoch 1/1:")]
    assert len(epoch_lines) == 1
    for figure in ("loss", "accuracy", "test loss", "test accuracy", "%", " s, ", "images/s)"):
        assert figure in epoch_lines[0]
    assert lines[-1] == f"Run directory: {tmp_path / 'out'}"
    assert any(ln.startswith("Done:") and "total" in ln for ln in lines)


def test_resuming_a_finished_run_says_so_in_one_line(baseline):
    # Before: it printed the header, "Resuming from ...", then "Done" with nothing trained.
    before = (baseline / "config.json").read_bytes()
    done = run_tfcnn("train", "--resume", str(baseline), "--epochs", "2")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"tfcnn: error: {baseline}: already trained 3 epochs, more than the 2 asked for; "
        "pass --epochs N (more than 3) to train further")
    assert "Traceback" not in done.stderr and "Resuming" not in done.stdout
    assert (baseline / "config.json").read_bytes() == before


def test_sigkill_then_resume_matches_an_uninterrupted_run(baseline, shared_datasets_dir,
                                                          tmp_path):
    out = tmp_path / "killed"
    proc = start_training(shared_datasets_dir, out)
    wait_for_first_checkpoint(proc, out)
    time.sleep(0.2)  # well inside epoch 2
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished = json.loads((out / "metrics.json").read_text())["epochs"]
    assert len(finished) < 3
    done = run_tfcnn("train", "--resume", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resuming from" in done.stdout
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert same_weights(load_weights(baseline / "model.keras"), load_weights(out / "model.keras"))


def _interrupt_in_epoch_2(data_dir: Path, out: Path, delay: float) -> tuple[str, int]:
    """SIGINT `delay` seconds after the first checkpoint; (stderr, the saved step)."""
    import tensorflow as tf

    # Small calls, so that the stop lands inside epoch 2 (the check comes between calls).
    proc = start_training(data_dir, out, "--steps-per-call", "5")
    wait_for_first_checkpoint(proc, out)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    step = tf.train.load_variable(str(out / "checkpoints" / "ckpt-2"),
                                  "step/.ATTRIBUTES/VARIABLE_VALUE")
    return stderr, int(step)


def test_sigint_saves_a_checkpoint_exits_130_and_resumes_exactly(baseline, shared_datasets_dir,
                                                                 tmp_path):
    # An epoch is ~0.6 s here: a busy machine can delay epoch 2's first call past the
    # signal, which then stops at the epoch's start; a later signal lands inside it.
    for attempt, delay in enumerate((0.15, 0.3, 0.5)):
        out = tmp_path / f"interrupted-{attempt}"
        stderr, step = _interrupt_in_epoch_2(shared_datasets_dir, out, delay)
        message = stderr.strip().splitlines()[-1]
        assert message.startswith("tfcnn: interrupted in epoch 2") and "--resume" in message
        assert "Traceback" not in stderr
        if 0 < step < 125:  # saved mid-epoch, not at an epoch boundary
            break
    assert 0 < step < 125, f"never interrupted inside epoch 2 (step {step})"
    done = run_tfcnn("train", "--resume", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(load_weights(baseline / "model.keras"), load_weights(out / "model.keras"))


def test_full_mnist_one_epoch_of_the_tutorial_network(shared_datasets_dir, tmp_path):
    done = run_tfcnn("train", "--data-dir", str(shared_datasets_dir), "--epochs", "1",
                     "--seed", "0", "--out", str(tmp_path / "full"), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(tmp_path / "full")  # --quiet: the run directory only
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["model"] == "tutorial"
    assert metrics["test_accuracy"] >= 0.975


def test_augmented_label_smoothed_adamw_run_resumes_exactly_after_sigkill(shared_datasets_dir,
                                                                         tmp_path):
    # Augmentation draws are seeded by (seed, optimizer step), both in the checkpoint: a
    # resumed run must warp the remaining batches exactly as an uninterrupted run does.
    extra = ("--shift", "2", "--rotate", "10", "--zoom", "0.1", "--elastic", "20",
             "--label-smoothing", "0.1", "--weight-decay", "0.01", "--schedule", "onecycle")
    whole = run_tfcnn(*train_args(shared_datasets_dir, tmp_path / "whole"), *extra)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    proc = start_training(shared_datasets_dir, out, *extra)
    wait_for_first_checkpoint(proc, out)
    time.sleep(0.2)
    proc.kill()
    proc.communicate(timeout=30)
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) < 3
    done = run_tfcnn("train", "--resume", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(load_weights(tmp_path / "whole" / "model.keras"),
                        load_weights(out / "model.keras"))


def test_a_mirror_network_trains_in_bfloat16_and_stays_mirror_invariant(shared_datasets_dir,
                                                                        tmp_path):
    import numpy as np

    from support import probabilities
    from tfcnn.models.network import load_model

    out = tmp_path / "mirror"
    done = run_tfcnn("train", "--dataset", "fashion_mnist", "--data-dir", str(shared_datasets_dir),
                     "--model", "16M3-BN-16M3-P2-BN-32M3-P2-BN-DO20-D10", "--epochs", "2",
                     "--precision", "mixed_bfloat16", "--hflip", "--seed", "3",
                     "--limit-train", "4000", "--limit-test", "500", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    # Training accuracy: after 250 steps, batch norm's moving statistics still lag (test
    # accuracy is ~30% for this network with ordinary layers too).
    assert json.loads((out / "metrics.json").read_text())["epochs"][-1]["accuracy"] >= 0.7
    model = load_model(out / "model.keras")
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(probabilities(model, x[:, :, ::-1])),
                               np.asarray(probabilities(model, x)), atol=1e-5)
