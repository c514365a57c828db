"""`tfcnn runs` and `tfcnn.steer.runs`: run directories found, read, listed, compared and
plotted; unreadable runs and empty or missing folders. The run files are written with the
real run-directory writers (core/rundir.py), so no model is trained here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tfcnn.cli import main
from tfcnn.core.config import TrainConfig
from tfcnn.core.rundir import RunDir, cpu_model, write_config, write_metrics
from tfcnn.steer.runs import RunRow, runs, short_cpu

XEON = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
DAY = 86400.0


def _epoch(n: int, test: float | None, val: float | None = None) -> dict:
    record = {"epoch": n, "loss": 1.0 / n, "accuracy": 0.5 + n / 100, "test_loss": None,
              "test_accuracy": test, "seconds": 1.5}
    if val is not None:
        record.update(val_loss=0.3, val_accuracy=val, test_loss=None)
    return record


def make_run(path: Path, *, when: float, cpu: str | None = XEON, epochs: int = 3,
             accuracies: tuple = (0.9, 0.95, 0.97), **settings) -> Path:
    """A run directory as tfcnn train leaves it (config.json, metrics.json, metrics.csv),
    its metrics.json dated `when` (seconds since the epoch)."""
    config = TrainConfig(epochs=epochs, seed=1, **settings)
    versions = {"tfcnn": "0.1.0", "tensorflow": "2.21.0", **({"cpu": cpu} if cpu else {})}
    run = RunDir(path)
    write_config(run, config, versions)
    records = [_epoch(i + 1, a) for i, a in enumerate(accuracies)]
    write_metrics(run, config.dataset, "tutorial", records, 12.3456)
    os.utime(run.metrics_json, (when, when))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """runs/: a new run, an older one without a CPU (written before the key existed), an
    ensemble's member, a run with a validation split that stopped early, and a run folder's
    own checkpoints/ holding a decoy that must not be listed."""
    root = tmp_path / "runs"
    now = 1_800_000_000.0
    make_run(root / "newest", when=now, preset="fast")
    make_run(root / "oldest", when=now - 3 * DAY, cpu=None, epochs=5, accuracies=(0.8,))
    make_run(root / "ens" / "member-2", when=now - 2 * DAY, dataset="fashion_mnist")
    val_run = RunDir(root / "val")
    write_config(val_run, TrainConfig(epochs=10, seed=2, val_split=0.1, early_stop=1),
                 {"cpu": XEON})
    write_metrics(val_run, "mnist", "tutorial", [_epoch(1, None, 0.91), _epoch(2, None, 0.90)],
                  4.0, final_test=(0.3, 0.905), best_epoch=1,
                  extra={"stopped": {"after_epoch": 2, "reason": "no better validation loss"},
                         "budget": {"seconds": 60.0, "planned_epochs": 8}})
    os.utime(val_run.metrics_json, (now - DAY, now - DAY))
    make_run(root / "newest" / "checkpoints" / "decoy", when=now)
    return root


def test_rows_are_every_run_oldest_first_with_their_facts(folder):
    rows = runs(folder)
    assert [r.name for r in rows] == ["oldest", os.path.join("ens", "member-2"), "val",
                                      "newest"]
    oldest, member, val, newest = rows
    assert (newest.dataset, newest.model, newest.preset) == ("mnist", "tutorial", "fast")
    assert (newest.epochs_done, newest.epochs_planned) == (3, 3)
    assert newest.test_accuracy == pytest.approx(0.97)
    assert newest.train_seconds == pytest.approx(12.346)
    assert newest.cpu == XEON and oldest.cpu is None
    assert (oldest.epochs_done, oldest.epochs_planned) == (1, 5)
    assert member.dataset == "fashion_mnist"
    # The budget's plan is the planned epoch count; the stop is recorded.
    assert (val.epochs_done, val.epochs_planned, val.best_epoch) == (2, 8, 1)
    assert val.test_accuracy == pytest.approx(0.905)
    assert val.stopped["reason"] == "no better validation loss"
    assert val.history == ((1, None, 0.91), (2, None, 0.90))


def test_json_lists_objects_with_path_and_test_accuracy(folder, capsys):
    assert main(["runs", str(folder), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [Path(o["path"]).name for o in listed] == ["oldest", "member-2", "val", "newest"]
    assert all({"path", "test_accuracy", "dataset", "model", "preset", "epochs",
                "train_seconds", "cpu", "date"} <= set(o) for o in listed)
    assert listed[3]["test_accuracy"] == pytest.approx(0.97)
    assert listed[0]["cpu"] is None and listed[3]["cpu"] == XEON
    assert listed[2]["budget"]["planned_epochs"] == 8
    day = time.strftime("%Y-%m-%d", time.localtime(1_800_000_000.0))
    assert listed[3]["date"].startswith(f"{day}T")


def test_a_run_without_a_test_yet_has_null_accuracy(tmp_path, capsys):
    make_run(tmp_path / "r", when=1_800_000_000.0, accuracies=(None,))
    assert main(["runs", str(tmp_path), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["test_accuracy"] is None and listed["epochs"] == 1


def test_table_shows_each_run_with_dash_for_what_is_unknown(folder, capsys):
    assert main(["runs", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["run", "dataset", "model", "preset", "epochs", "test"]
    assert len(lines) == 5
    oldest, newest = lines[1], lines[4]
    assert oldest.startswith("oldest ") and " 1/5 " in oldest and "80.00%" in oldest
    assert "Intel" not in oldest and " - " in oldest  # no CPU recorded by older runs
    assert "fast" in newest and "97.00%" in newest and "12.3" in newest
    assert "Intel Xeon Platinum 8481C" in newest and "(R)" not in newest
    assert "stopped: no better validation loss" in lines[3] and "budget 60 s" in lines[3]


def test_an_unreadable_run_says_so_and_the_others_still_list(folder, capsys):
    (folder / "oldest" / "metrics.json").write_text("{not json", encoding="utf-8")
    (folder / "newest" / "metrics.json").write_text('{"epochs": 3}', encoding="utf-8")
    assert main(["runs", str(folder)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("oldest"))
    assert "unreadable:" in row and "metrics.json: not readable JSON" in row
    assert "not a list of objects" in next(line for line in out.splitlines()
                                           if line.startswith("newest"))
    assert "90.50%" in out  # the readable runs are listed all the same
    rows = runs(folder)
    assert sum(r.error is not None for r in rows) == 2 and len(rows) == 4


def test_an_empty_folder_is_a_message_and_status_0(tmp_path, capsys):
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "config.json").write_text("{}")  # no metrics.json: no run
    assert main(["runs", str(tmp_path)]) == 0
    assert "No runs under" in capsys.readouterr().out
    assert main(["runs", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert runs(tmp_path) == []


def test_a_missing_folder_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: no such folder" in err


def test_default_folder_is_runs_under_the_working_directory(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder.parent)
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


def test_plot_writes_a_png_of_the_histories(folder, tmp_path, capsys):
    png = tmp_path / "out" / "histories.png"
    assert main(["runs", str(folder), "--json", "--plot", str(png)]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 4 and f"Plot: {png}" in captured.err
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (900, 550)
    assert not [p.name for p in png.parent.iterdir() if p.name != "histories.png"]


def test_history_figure_draws_a_line_per_run(folder):
    from tfcnn.steer.runs import history_figure

    rows = runs(folder)
    (axes,) = history_figure(rows).axes
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert len(labels) == 4 and "val (tutorial), validation" in labels
    assert "star: final test" in axes.get_title()
    empty = history_figure([RunRow(Path("x"), "x")]).axes[0]
    assert "no run has" in empty.texts[0].get_text()


def test_plot_refuses_a_name_that_is_not_png(folder, tmp_path, capsys):
    assert main(["runs", str(folder), "--plot", str(tmp_path / "plot.jpg")]) == 2
    assert "expected a file name ending in .png" in capsys.readouterr().err
    assert not (tmp_path / "plot.jpg").exists()


def test_runs_does_not_import_tensorflow(folder):
    code = ("import sys\nfrom tfcnn.cli import main\n"
            f"assert main(['runs', {str(folder)!r}]) == 0\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_cpu_model_reads_cpuinfo_or_falls_back(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: {XEON}\nflags\t\t: fpu\n")
    assert cpu_model(info) == XEON
    monkeypatch.setattr("platform.processor", lambda: "arm64")
    assert cpu_model(tmp_path / "missing") == "arm64"
    assert short_cpu("AMD EPYC 7B13 64-Core Processor") == "AMD EPYC 7B13 64-Core"


def test_library_versions_name_the_cpu_for_config_json():
    from tfcnn.core.rundir import library_versions

    assert library_versions()["cpu"] == cpu_model()
