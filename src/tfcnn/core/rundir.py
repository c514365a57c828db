"""The run directory: its layout, and reading and writing its files atomically.

    RUN_DIR/
      config.json     every setting, the seed actually used, versions
      metrics.json    {"dataset", "model", "epochs": [...], "test_accuracy", "train_seconds"}
                      (+ "test_loss", "best_epoch" with a validation split)
      metrics.csv     one row per epoch
      model.keras     the latest model (rewritten after every epoch); with a validation
                      split, the best epoch's so far
      checkpoints/    tf.train.CheckpointManager files
      logs/           TensorBoard event files (train/ and test/)
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcnn import __version__
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import RunDirError
from tfcnn.core.fsutil import atomic_write_json, atomic_write_text

EPOCH_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds")
VAL_FIELDS = ("val_loss", "val_accuracy")  # epochs of a run with a validation split


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"


class RunFinished(RunDirError):
    """Resuming a run that has trained all the epochs it was asked for, or that stopped
    early (`stopped`: why, e.g. --early-stop's patience ran out)."""

    def __init__(self, path: Path, done: int, epochs: int, more: str = "epochs=N",
                 stopped: str | None = None) -> None:
        self.path, self.done, self.epochs, self.stopped = path, done, epochs, stopped
        super().__init__(self.describe(more))

    def describe(self, more: str) -> str:
        """The message, with `more` spelling the setting to raise (`--epochs N`, `epochs=N`)."""
        if self.stopped:
            return f"{self.path}: already finished: {self.stopped}; nothing left to train"
        trained = (f"already trained {self.done} of {self.epochs} epochs"
                   if self.done == self.epochs else
                   f"already trained {self.done} epochs, more than the {self.epochs} asked for")
        return f"{self.path}: {trained}; pass {more} (more than {self.done}) to train further"


def resolve_model_file(path: str | Path) -> Path:
    """The `.keras` file for a command's `RUN_DIR|MODEL` argument."""
    path = Path(path)
    if path.is_dir():
        model = RunDir(path).model
        if not model.is_file():
            raise RunDirError(f"{path}: no model.keras (is it a tfcnn run directory whose "
                              "first epoch finished?)")
        return model
    if not path.is_file():
        raise RunDirError(f"{path}: no such run directory or model file")
    if path.suffix != ".keras":
        raise RunDirError(f"{path}: expected a run directory or a .keras model file")
    return path


def default_run_path(config: TrainConfig, model_name: str, now: float | None = None) -> Path:
    """runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>, with a suffix if that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    dataset = config.dataset
    if dataset.startswith("folder:"):
        dataset = "folder-" + Path(dataset[len("folder:"):]).name
    safe = "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", part) for part in (dataset, model_name))
    return unused_path(Path("runs") / f"{safe}-{stamp}")


def unused_path(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, ...: the first that does not exist yet."""
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def write_config(run: RunDir, config: TrainConfig, versions: dict[str, str]) -> None:
    atomic_write_json(run.config, {**config.to_dict(), "versions": versions})


def read_config(run: RunDir) -> TrainConfig:
    """The TrainConfig stored in RUN_DIR/config.json."""
    try:
        data = json.loads(run.config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run.config}: not found (is {run.path} a tfcnn run directory?)"
                          ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{run.config}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{run.config}: expected a JSON object")
    data.pop("versions", None)
    return TrainConfig.from_dict(data, source=str(run.config))


def read_metrics(run: RunDir) -> dict[str, Any]:
    """metrics.json as a dict, or {} when there is none yet."""
    try:
        data = json.loads(run.metrics_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{run.metrics_json}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{run.metrics_json}: expected a JSON object")
    return data


def read_epoch_records(run: RunDir) -> list[dict[str, Any]]:
    """The per-epoch records in metrics.json, or [] when there is none yet."""
    return list(read_metrics(run).get("epochs", []))


def write_metrics(run: RunDir, dataset: str, model: str, epochs: list[dict[str, Any]],
                  train_seconds: float, *, final_test: tuple[float | None, float | None] | None
                  = None, best_epoch: int | None = None,
                  extra: dict[str, Any] | None = None) -> None:
    """metrics.json (the shape tools read) and metrics.csv, both atomically.

    `final_test` (loss, accuracy) and `best_epoch` come from a run with a validation set,
    whose epochs carry val_loss/val_accuracy and whose test set is used once, at the end.
    `extra`: the run's other facts (a time budget's plan, why it stopped early).
    """
    summary: dict[str, Any] = {
        "dataset": dataset,
        "model": model,
        "epochs": epochs,
        "test_accuracy": epochs[-1]["test_accuracy"] if epochs else None,
        "train_seconds": round(train_seconds, 3),
    }
    if final_test is not None:
        summary["test_accuracy"] = _round(final_test[1])
        summary.update(test_loss=_round(final_test[0]), best_epoch=best_epoch)
    summary.update(extra or {})
    atomic_write_json(run.metrics_json, summary)
    fields = EPOCH_FIELDS + tuple(f for f in VAL_FIELDS if any(f in e for e in epochs))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(epochs)
    atomic_write_text(run.metrics_csv, buffer.getvalue())


# What a killed writer leaves behind: fsutil.atomic_path's temporaries (".model.keras.x1y2.tmp
# .keras", ".metrics.json.x1y2.tmp") in the run directory, and in checkpoints/ TensorFlow's
# part-written checkpoint folders ("ckpt-3_temp/") and state files ("checkpoint.tmp<hex>").
_STALE_FILE = re.compile(r"^\..+\.tmp(\.\w+)?$")
_STALE_CHECKPOINT = re.compile(r"^(ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32})$")


def update_metrics(run: RunDir, **facts: Any) -> None:
    """Add run-level `facts` to an existing metrics.json (atomically)."""
    atomic_write_json(run.metrics_json, {**read_metrics(run), **facts})


def clean_stale_temp_files(run: RunDir) -> list[str]:
    """Remove the leftovers of writes a kill interrupted; return their names (relative).

    Call only when no other process writes to `run` (on resume, before training starts).
    """
    found = [p for p in _listing(run.path) if _STALE_FILE.match(p.name)
             and p.is_file() and not p.is_symlink()]
    for path in found:
        path.unlink(missing_ok=True)
    removed = found + remove_partial_checkpoints(run.checkpoints)
    return sorted(str(path.relative_to(run.path)) for path in removed)


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Remove TensorFlow's part-written checkpoint folders (`ckpt-3_temp/`) and state files
    (`checkpoint.tmp<hex>`) from `folder`; return what was removed.

    Call only when no other process saves there (a failed save's own leftovers, or on resume).
    """
    found = [p for p in _listing(folder) if _STALE_CHECKPOINT.match(p.name)]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (/proc/cpuinfo "model name", else `platform.processor()`), or ""."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no /proc
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def library_versions() -> dict[str, str]:
    """Versions recorded in config.json, and the CPU that trained (`tfcnn runs` shows it;
    imports TensorFlow: call only when training)."""
    import keras
    import numpy
    import tensorflow

    return {"tfcnn": __version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "cpu": cpu_model()}
