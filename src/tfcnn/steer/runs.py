"""`tfcnn runs`: the run directories under a folder, as rows to compare, and their curves.

A run directory is a folder holding config.json and metrics.json (core/rundir.py). They
are found in the folder itself and in its sub-folders down to `MAX_DEPTH` levels, so an
ensemble's members (ENSEMBLE/member-1) and a search's trials show beside plain runs; a
run's own checkpoints/, logs/ and cache/ are not searched, nor symbolic links (no loops).
Each becomes a `RunRow` read from those two files alone (no TensorFlow, no model loaded):
a run whose files cannot be read is a row that says why, and the others are listed all
the same. `runs` returns
the rows oldest first; `format_table` is the command's table, `history_figure` and
`plot_histories` draw the runs' test accuracy epoch by epoch on one figure.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfcnn.core.errors import RunDirError
from tfcnn.core.rundir import RunDir, read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_DEPTH = 4  # DIR/a/b/c/run: a search's trials inside an experiment's folder still show
_NOT_RUNS = {"checkpoints", "logs", "cache", "__pycache__"}  # a run's own folders
_NO_VALUE = "-"


@dataclass(frozen=True)
class RunRow:
    """One run directory's facts, as `tfcnn runs` lists them (None: not known).

    `epochs_done` is the number of epochs in metrics.json; `epochs_planned` the time
    budget's planned epochs, else config.json's `epochs`. `date` is when metrics.json was
    last written (seconds since the epoch). `history` holds (epoch, test accuracy,
    validation accuracy) per epoch. `error` says why the run's files could not be read.
    """

    path: Path
    name: str = ""  # the path relative to the folder listed
    dataset: str | None = None
    model: str | None = None
    preset: str | None = None
    epochs_done: int | None = None
    epochs_planned: int | None = None
    test_accuracy: float | None = None
    train_seconds: float | None = None
    cpu: str | None = None
    date: float | None = None
    stopped: dict[str, Any] | None = field(default=None, hash=False)
    budget: dict[str, Any] | None = field(default=None, hash=False)
    history: tuple[tuple[int, float | None, float | None], ...] = ()
    best_epoch: int | None = None  # a run with a validation split: the epoch kept
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as `tfcnn runs --json` prints it (path and date as strings)."""
        return {"path": str(self.path), "name": self.name, "dataset": self.dataset,
                "model": self.model, "preset": self.preset, "epochs": self.epochs_done,
                "epochs_planned": self.epochs_planned, "test_accuracy": self.test_accuracy,
                "train_seconds": self.train_seconds, "cpu": self.cpu,
                "date": None if self.date is None else _iso_date(self.date),
                "best_epoch": self.best_epoch, "stopped": self.stopped, "budget": self.budget,
                "error": self.error}


def runs(directory: str | os.PathLike[str] = "runs") -> list[RunRow]:
    """The run directories under `directory` (itself included), oldest first.

    Raises `RunDirError` when `directory` is not a folder; a folder without runs gives [].

    Example:
        >>> rows = runs(tmp)
        >>> row = next(r for r in rows if r.path == run_dir)
        >>> row.dataset, row.epochs_done, 0 < row.test_accuracy <= 1
        ('mnist', 1, True)
        >>> row.to_json()["path"] == str(run_dir), row.to_json()["model"]
        (True, '8C3-P2-16C3-P2-D10')
    """
    root = Path(directory)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise RunDirError(f"{root}: {what} (tfcnn runs lists the run directories under a "
                          "folder; default runs/)")
    rows = [read_row(path, root) for path in find_run_dirs(root)]
    return sorted(rows, key=lambda r: (r.date is None, r.date or 0.0, r.name))


def find_run_dirs(root: Path, depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Folders under `root` (itself included, `depth` levels down) with config.json and
    metrics.json, in name order; unreadable folders are passed over."""
    if (root / "config.json").is_file() and (root / "metrics.json").is_file():
        yield root
    if depth == 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if child.name not in _NOT_RUNS and not child.name.startswith("."):
            yield from find_run_dirs(child, depth - 1)


def read_row(path: Path, root: Path) -> RunRow:
    """The row of the run directory `path`; a row with `error` when a file is unreadable."""
    name = "." if path == root else str(path.relative_to(root))
    date = _mtime(RunDir(path).metrics_json)
    try:
        config = _read_config(path)
        metrics = read_metrics(RunDir(path))
        return _row(path, name, date, config, metrics)
    except RunDirError as exc:
        return RunRow(path, name, date=date, error=str(exc))


def _read_config(path: Path) -> dict[str, Any]:
    """config.json as a dict, unchecked: an older run's settings are still shown."""
    file = RunDir(path).config
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{file}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{file}: expected a JSON object")
    return data


def _row(path: Path, name: str, date: float | None, config: dict[str, Any],
         metrics: dict[str, Any]) -> RunRow:
    epochs = metrics.get("epochs", [])
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise RunDirError(f"{RunDir(path).metrics_json}: \"epochs\" is not a list of objects")
    budget = metrics.get("budget") if isinstance(metrics.get("budget"), dict) else None
    versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
    planned = (budget or {}).get("planned_epochs", config.get("epochs"))
    stopped = metrics.get("stopped") if isinstance(metrics.get("stopped"), dict) else None
    return RunRow(
        path, name, dataset=_text(metrics.get("dataset", config.get("dataset"))),
        model=_text(metrics.get("model", config.get("model"))),
        preset=_text(config.get("preset")), epochs_done=len(epochs),
        epochs_planned=planned if isinstance(planned, int) else None,
        test_accuracy=_number(metrics.get("test_accuracy")),
        train_seconds=_number(metrics.get("train_seconds")), cpu=_text(versions.get("cpu")),
        date=date, stopped=stopped, budget=budget,
        best_epoch=metrics.get("best_epoch") if isinstance(metrics.get("best_epoch"), int)
        else None,
        history=tuple((_epoch(e, i + 1), _number(e.get("test_accuracy")),
                       _number(e.get("val_accuracy"))) for i, e in enumerate(epochs)))


def _epoch(record: dict[str, Any], position: int) -> int:
    number = record.get("epoch")
    return number if isinstance(number, int) and not isinstance(number, bool) else position


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mtime(file: Path) -> float | None:
    try:
        return file.stat().st_mtime
    except OSError:
        return None


def _iso_date(seconds: float) -> str:
    """Local time with its UTC offset, to the second (2026-05-01T14:03:09+02:00)."""
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


# --- the table ---------------------------------------------------------------------------

_COLUMNS = ("run", "dataset", "model", "preset", "epochs", "test acc", "train s", "CPU",
            "date", "note")
_CPU_NOISE = re.compile(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*GHz")


def short_cpu(name: str) -> str:
    """A CPU model name without its trademarks and clock ("Intel Xeon Platinum 8481C")."""
    return " ".join(_CPU_NOISE.sub(" ", name).split())


def _cells(row: RunRow) -> list[str]:
    def value(v: Any, fmt: str = "{}") -> str:
        return _NO_VALUE if v is None else fmt.format(v)

    dataset = row.dataset
    if dataset and dataset.startswith("folder:"):  # the folder's name says which one
        dataset = "folder:" + Path(dataset[len("folder:"):]).name
    epochs = (_NO_VALUE if row.epochs_done is None else
              f"{row.epochs_done}/{value(row.epochs_planned)}")
    accuracy = value(None if row.test_accuracy is None else 100 * row.test_accuracy,
                     "{:.2f}%")
    date = _NO_VALUE if row.date is None else time.strftime("%Y-%m-%d %H:%M",
                                                            time.localtime(row.date))
    return [row.name, value(dataset), _clip(value(row.model), 28), value(row.preset), epochs,
            accuracy, value(row.train_seconds, "{:.1f}"),
            _clip(short_cpu(row.cpu), 26) if row.cpu else _NO_VALUE, date, _note(row)]


def _note(row: RunRow) -> str:
    if row.error:
        return f"unreadable: {row.error}"
    notes = []
    reason = row.stopped.get("reason") if row.stopped else None
    if isinstance(reason, str) and reason:  # the whole reason is in --json
        notes.append(_clip(reason if reason.startswith("stopped") else f"stopped: {reason}",
                           60))
    if row.budget and isinstance(row.budget.get("seconds"), int | float):
        notes.append(f"budget {row.budget['seconds']:g} s")
    return "; ".join(notes)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(rows: Sequence[RunRow]) -> str:
    """The rows as an aligned text table, one line per run under a header line."""
    lines = [list(_COLUMNS), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS) - 1)]
    right = {"epochs", "test acc", "train s"}
    out = []
    for line in lines:
        cells = [cell.rjust(w) if column in right else cell.ljust(w)
                 for cell, w, column in zip(line, widths, _COLUMNS, strict=False)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)


# --- the figure --------------------------------------------------------------------------


def history_figure(rows: Sequence[RunRow], title: str = "Test accuracy by epoch") -> Figure:
    """One line per run: its test accuracy after each epoch (dashed: the validation
    accuracy of a run that tested only at the end, its final test a star)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    drawn = [kind for row in rows if (kind := _draw_run(ax, row))]
    if not drawn:
        ax.text(0.5, 0.5, "no run has a test or validation accuracy yet", ha="center",
                va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7 if len(drawn) > 8 else 9, loc="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    key = "; dashed: validation, star: final test" if "validation" in drawn else ""
    ax.set_title(f"{title} ({len(rows)} run{'' if len(rows) == 1 else 's'}{key})")
    FigureCanvasAgg(fig)  # renders with Agg, whatever pyplot uses
    return fig


def _draw_run(ax: Any, row: RunRow) -> str:
    """Draw one run's curve on `ax`: "test", "validation", or "" when it has none."""
    tested = [(epoch, test) for epoch, test, _ in row.history if test is not None]
    validated = [(epoch, val) for epoch, _, val in row.history if val is not None]
    label = f"{row.name} ({row.model})" if row.model else row.name
    if len(tested) > 1 or (tested and not validated):
        ax.plot(*zip(*tested, strict=True), marker="o", markersize=3, label=label)
        return "test"
    if not validated:
        return ""
    (line,) = ax.plot(*zip(*validated, strict=True), linestyle="--", marker=".",
                      label=f"{label}, validation")
    if row.test_accuracy is not None:  # the kept epoch's model, tested once
        ax.plot([row.best_epoch or validated[-1][0]], [row.test_accuracy], marker="*",
                markersize=10, linestyle="none", color=line.get_color())
    return "validation"


def plot_histories(rows: Sequence[RunRow], path: str | os.PathLike[str]) -> Path:
    """`history_figure(rows)` written as a PNG at `path` (atomically); returns the path."""
    from tfcnn.evaluation.plots import save_figure

    return save_figure(history_figure(rows), path)
