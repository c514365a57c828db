"""Resuming after damage: truncated checkpoints, a kill's temp files, a full disk."""

import errno
import json

import pytest
import tensorflow as tf

from support import load_weights, same_weights, tiny_digits
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import RunDirError
from tfcnn.training.checkpoint import TrainingState
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run

CONFIG = TrainConfig(model="8C3-P2-BN-D10", epochs=2, batch_size=64, seed=1, lr=0.01)


def train(out, config=CONFIG, **kwargs):
    infos = []
    result = train_run(config, out, Hooks(), dataset=tiny_digits(), on_start=infos.append,
                       **kwargs)
    return result, infos[0]


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "run"
    train(out)
    return out


@pytest.mark.parametrize("part", ["data-00000-of-00001", "index"])
def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one(baseline, tmp_path, part):
    out = tmp_path / "run"
    train(out, CONFIG.replace(epochs=1))
    train(out, resume=True)  # epoch 2: ckpt-2
    truncate(out / "checkpoints" / f"ckpt-2.{part}")
    result, info = train(out, CONFIG.replace(epochs=3), resume=True)  # before: IndexError
    assert info.resumed_from.endswith("ckpt-1")
    assert "ckpt-2" in info.resume_note and "older ckpt-1" in info.resume_note
    assert [r["epoch"] for r in result.epochs] == [1, 2, 3]
    # Epoch 2 was trained again from ckpt-1: exactly the weights of an uninterrupted run.
    again = tmp_path / "again"
    train(again, CONFIG.replace(epochs=3))
    assert same_weights(load_weights(out / "model.keras"), load_weights(again / "model.keras"))


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
    out = tmp_path / "run"
    train(out, CONFIG.replace(epochs=1))
    truncate(out / "checkpoints" / "ckpt-1.data-00000-of-00001")
    with pytest.raises(RunDirError, match=r"no intact checkpoint to resume from: ckpt-1 \("):
        train(out, resume=True)


def test_resume_removes_what_a_killed_save_left(baseline, tmp_path):
    out = tmp_path / "run"
    train(out, CONFIG.replace(epochs=1))
    stale = [out / ".model.keras.k2v9x1.tmp.keras", out / ".metrics.json.a8d0qz.tmp",
             out / "checkpoints" / ("checkpoint.tmp" + "0123456789abcdef" * 2)]
    for path in stale:
        path.write_bytes(b"partial")
    (out / "checkpoints" / "ckpt-2_temp").mkdir()
    (out / "checkpoints" / "ckpt-2_temp" / "part-00000-of-00001.index").write_bytes(b"x")
    kept = [out / "notes.tmp", out / ".hidden", out / "checkpoints" / "mine_temp"]
    for path in kept:
        path.write_text("mine")
    _, info = train(out, resume=True)
    assert not any(path.exists() for path in stale)
    assert not (out / "checkpoints" / "ckpt-2_temp").exists()
    assert all(path.exists() for path in kept)
    assert set(info.cleaned) == {".model.keras.k2v9x1.tmp.keras", ".metrics.json.a8d0qz.tmp",
                                 "checkpoints/ckpt-2_temp", f"checkpoints/{stale[2].name}"}
    assert same_weights(load_weights(out / "model.keras"),
                        load_weights(baseline / "model.keras"))


def _disk_full_on_epoch_2(monkeypatch, module, name):
    """`module.name` (a writer) fails as a full disk does once epoch 1's file exists."""
    real = getattr(module, name)

    def writer(path, *args, **kwargs):
        if path.exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, writer)


def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(baseline, tmp_path,
                                                                    monkeypatch):
    import tfcnn.core.rundir as rundir

    out = tmp_path / "run"
    _disk_full_on_epoch_2(monkeypatch, rundir, "atomic_write_json")
    with pytest.raises(RunDirError) as caught:
        train(out)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{out / 'metrics.json'}: no space left on device")
    assert f"tfcnn train --resume {out}" in message
    # Epoch 1's files are whole; resuming once there is room gives the uninterrupted result.
    assert [e["epoch"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [1]
    monkeypatch.undo()
    train(out, resume=True)
    assert same_weights(load_weights(out / "model.keras"),
                        load_weights(baseline / "model.keras"))


def test_a_full_disk_while_checkpointing_names_tensorflows_file(tmp_path, monkeypatch):
    def full(self):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{tmp_path}/run/checkpoints/ckpt-1_temp/part-00000-of-00001.data"
                        "-00000-of-00001.tempstate1; No space left on device")

    monkeypatch.setattr(TrainingState, "save", full)
    with pytest.raises(RunDirError, match=r"^\S+/ckpt-1_temp/part-00000-of-00001\.data-00000-of"
                                          r"-00001\.tempstate1: no space left on device"):
        train(tmp_path / "run")


@pytest.mark.slow  # a fresh process: the file-size limit must not touch pytest's own files
def test_a_failed_checkpoint_write_leaves_no_temp_folder(tmp_path):
    # A real failure inside TensorFlow's SaveV2: a file-size limit makes the data file's
    # write fail ("File too large"), as a full disk does. Before: ckpt-1_temp/ was left.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        import keras
        from tfcnn.training.checkpoint import make_training_state
        model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(3000)])
        state = make_training_state(Path({str(tmp_path)!r}), model, keras.optimizers.Adam(),
                                    [])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))
        try:
            state.save()
        except Exception as exc:
            print("failed:", type(exc).__name__, str(exc).splitlines()[0])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed: OutOfRangeError" in done.stdout and "ckpt-1_temp" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path):
    from tfcnn.core.rundir import RunFinished

    out = tmp_path / "run"
    train(out)
    before = {name: (out / name).read_bytes() for name in ("config.json", "metrics.json")}
    with pytest.raises(RunFinished) as caught:
        train(out, resume=True)
    assert str(caught.value) == (f"{out}: already trained 2 of 2 epochs; pass epochs=N "
                                 "(more than 2) to train further")
    with pytest.raises(RunFinished, match="already trained 2 epochs, more than the 1 asked for"):
        train(out, CONFIG.replace(epochs=1), resume=True)
    # config.json still says 2 epochs: a refused resume rewrites nothing.
    assert {name: (out / name).read_bytes() for name in before} == before
    result, _ = train(out, CONFIG.replace(epochs=3), resume=True)
    assert [r["epoch"] for r in result.epochs] == [1, 2, 3]


def test_a_finished_validation_run_killed_before_its_final_test_completes_it(tmp_path):
    from tfcnn.data.source import with_validation_split
    from tfcnn.training.run import train_run

    config = CONFIG.replace(val_split=0.25)
    data = with_validation_split(tiny_digits(), 0.25, seed=1)
    out = tmp_path / "run"
    train_run(config, out, Hooks(), dataset=data)
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics.pop("test_accuracy"), metrics.pop("test_loss"), metrics.pop("best_epoch")
    (out / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": None}))
    resumed = train_run(config, out, Hooks(), resume=True, dataset=data)  # no RunFinished
    assert resumed.test_accuracy == final[0]
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == final[2]
