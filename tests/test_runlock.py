"""One training process per run directory (core/runlock.py): a second one is refused in one
line naming the holder; a lock a killed process left is taken over; ensembles lock too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from support import REPO, tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import RunDirError
from tfcnn.core.runlock import LOCK_FILE, in_use_message, lock_run, locked_run

CONFIG = TrainConfig(model="8C3-P2-D10", epochs=1, batch_size=64, seed=1, lr=0.01)


def hold(run_dir) -> subprocess.Popen:
    """Another process that locks `run_dir` as tfcnn train does, then waits to be killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tfcnn.core.runlock import lock_run
        lock_run(Path({str(run_dir)!r}))
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def train(out, **kwargs):
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import train_run

    return train_run(CONFIG, out, Hooks(), dataset=tiny_digits(), **kwargs)


def test_a_second_process_is_refused_naming_the_holder_until_it_dies(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        with pytest.raises(RunDirError) as caught:
            train(out)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{out}: in use by tfcnn train (pid {holder.pid}) since ")
        assert f"wait for it or stop it (kill -INT {holder.pid} saves a checkpoint" in message
        assert not (out / "config.json").exists()  # nothing of the refused run was written
    finally:
        kill(holder)
    # kill -9 left the lock file with the dead holder's pid; the kernel released its lock.
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    result = train(out)
    assert [r["epoch"] for r in result.epochs] == [1]
    assert not (out / LOCK_FILE).exists()  # removed when the run ends


def test_a_resume_is_refused_while_another_process_trains_the_run(tmp_path):
    out = tmp_path / "run"
    train(out)
    holder = hold(out)
    try:
        with pytest.raises(RunDirError, match=rf"in use by tfcnn train \(pid {holder.pid}\)"):
            train(out, resume=True)
    finally:
        kill(holder)


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(gone.stdout), "host": os.uname()[1],
                                             "since": 0, "command": "tfcnn train"}))
    with locked_run(out) as lock:
        assert lock.locked
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_FILE).exists()


def test_two_locks_in_one_process_conflict_and_release_lets_the_next_in(tmp_path):
    first = lock_run(tmp_path / "run")
    with pytest.raises(RunDirError, match=rf"in use by tfcnn train \(pid {os.getpid()}\)"):
        lock_run(tmp_path / "run")
    first.release()
    lock_run(tmp_path / "run").release()


def test_the_message_names_another_host_and_an_unreadable_lock():
    message = in_use_message(REPO, {"pid": 7, "host": "elsewhere", "since": 0,
                                    "command": "tfcnn train"})
    assert "(pid 7 on elsewhere)" in message and "kill" not in message
    assert in_use_message(REPO, {}) == f"{REPO}: in use by another process; wait for it or stop it"


def test_an_ensemble_is_locked_as_a_whole(tmp_path):
    from tfcnn.training.ensemble import train_ensemble
    from tfcnn.training.loop import Hooks

    holder = hold(tmp_path / "ens")
    try:
        with pytest.raises(RunDirError, match=rf"in use by tfcnn train \(pid {holder.pid}\)"):
            train_ensemble(CONFIG, tmp_path / "ens", 2, Hooks())
        assert not (tmp_path / "ens" / "ensemble.json").exists()
    finally:
        kill(holder)
