"""Training from Python: `tfcnn.train(...) -> Run`, `tfcnn.open_run(path) -> Run`.

`training_config` and `start_training` (api/starting.py) are the steps `tfcnn train` takes
too: the CLI builds its settings from flags, the API from keywords, and both run the same
code. Nothing here prints: the API shows a progress bar (api/progress.py), the CLI its own
lines. In-memory data (`data=`) is api/arrays.py's, Keras callbacks api/callbacks.py's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfcnn.api.progress import progress_bars
from tfcnn.api.starting import check_resumable, start_training
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.rundir import RunDir, read_config, read_epoch_records
from tfcnn.core.spelling import Spelling, keyword, spelled
from tfcnn.data.source import absolute_data_dir
from tfcnn.training.hooks import Hooks

__all__ = ["Run", "check_resumable", "check_settings", "open_run", "start_training",
           "train", "training_config"]

# Settings a resumed run may change; the rest come from the run's config.json.
RESUMABLE = ("epochs", "data_dir", "steps_per_call", "cache")
FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def absolute_paths(settings: dict[str, Any]) -> dict[str, Any]:
    """`data_dir` and a `folder:PATH` dataset made absolute (and ~ expanded), so that the
    run's config.json still finds them from any working directory."""
    fixed = dict(settings)
    if fixed.get("data_dir") is not None:
        fixed["data_dir"] = absolute_data_dir(fixed["data_dir"])
    dataset = fixed.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("folder:") and dataset[7:].strip():
        fixed["dataset"] = "folder:" + os.path.abspath(os.path.expanduser(dataset[7:]))
    return fixed


def training_config(settings: dict[str, Any], resume: str | os.PathLike[str] | None = None,
                    name: Spelling = keyword) -> TrainConfig:
    """The `TrainConfig` for a new run (a preset's settings under the given ones) or for
    resuming `resume` (its config.json, with only `RESUMABLE` settings changed).

    `name` spells a setting in error messages: keywords (`batch_size`) by default, the
    CLI passes `core.spelling.flag` (`--batch-size`).
    """
    with spelled(name):
        return _training_config(settings, resume, name)


def _training_config(settings: dict[str, Any], resume: str | os.PathLike[str] | None,
                     name: Spelling) -> TrainConfig:
    from tfcnn.core.presets import config_from_preset

    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{', '.join(map(name, unknown))}: unknown setting(s) (expected "
                          f"TrainConfig fields such as dataset, model, epochs, lr)")
    given = absolute_paths({k: v for k, v in settings.items() if v is not None})
    if resume is None:
        return config_from_preset(given.pop("preset", None), given)
    refused = sorted(set(given) - set(RESUMABLE))
    if refused:
        allowed = ", ".join(map(name, RESUMABLE))
        source = Path(resume) / "config.json"
        raise ConfigError(f"{', '.join(map(name, refused))}: not allowed with "
                          f"{name('resume')} (settings come from {source}; only {allowed} "
                          "may change)")
    return read_config(RunDir(Path(resume))).replace(**given)


def check_settings(config: TrainConfig, ensemble: int | None = None,
                   name: Spelling = keyword) -> str:
    """Cheap checks before TensorFlow loads; returns the model's name for the run directory.
    `name` spells settings in error messages, as for `training_config`."""
    with spelled(name):
        return _check_settings(config, ensemble, name)


def _check_settings(config: TrainConfig, ensemble: int | None, name: Spelling) -> str:
    from tfcnn.core.errors import ModelSpecError
    from tfcnn.core.presets import PRESETS
    from tfcnn.data.source import check_dataset_setting
    from tfcnn.spec.notation import resolve_model
    from tfcnn.training.ensemble import check_ensemble

    try:
        model_name, _ = resolve_model(config.model)
    except ModelSpecError:
        if config.model in PRESETS:  # a training recipe given where a network belongs
            raise ModelSpecError(f"{name('model')} {config.model!r}: not a network but a "
                                 f"training preset; use {name('preset')} {config.model}"
                                 ) from None
        raise
    if ensemble is not None:
        check_ensemble(ensemble, config)
        model_name = f"{model_name}-ensemble{ensemble}"
    check_dataset_setting(config, data_dir_origin=name("data_dir"))
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise ConfigError(f"{name('data_dir')} {config.data_dir}: no such directory")
    return model_name


class Run:
    """A run directory: its settings, metrics and model.

    Example:
        >>> run = tfcnn.open_run(run_dir)
        >>> 0 < run.metrics["test_accuracy"] <= 1, len(run.history)
        (True, 1)
        >>> run.load().predict(digit_files)[0].label in run.load().class_names
        True
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._dir = RunDir(self.path)

    @property
    def config(self) -> TrainConfig:
        """The run's settings (config.json) as a `TrainConfig`."""
        return read_config(self._dir)

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json as a dict: dataset, model, epochs (per-epoch records), test_accuracy,
        train_seconds, ..."""
        try:
            return json.loads(self._dir.metrics_json.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{self._dir.metrics_json}: no such file (has the run's first "
                              "epoch finished?)") from None
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self._dir.metrics_json}: cannot be read ({exc})") from None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The epoch records: epoch, loss, accuracy, test_loss, test_accuracy, seconds, ..."""
        return read_epoch_records(self._dir)

    def load(self) -> Any:
        """The run's trained model as a `tfcnn.Classifier`."""
        from tfcnn.api.classifier import load

        return load(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)


def open_run(path: str | os.PathLike[str]) -> Run:
    """The run directory at `path` as a `Run`.

    Raises `RunDirError` when `path` holds no tfcnn run (no config.json).

    Example:
        >>> tfcnn.open_run(run_dir).config.epochs
        1
    """
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    if not run.config.is_file():
        raise RunDirError(f"{run.path}: not a tfcnn run directory (no config.json)")
    return Run(run.path)


def _settings_of(config: TrainConfig | Mapping[str, Any] | None, given: dict[str, Any],
                 resume: str | os.PathLike[str] | None) -> TrainConfig:
    """The run's TrainConfig from `config` (a TrainConfig or a mapping of settings) with
    the keyword settings over it, or a resumed run's."""
    if config is None or isinstance(config, Mapping):
        return training_config({**(config or {}), **given}, resume)
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config: expected a TrainConfig or a dict of settings, got "
                          f"{type(config).__name__}")
    if resume is not None:
        raise ConfigError("config: not with resume (the run's config.json holds its settings)")
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: unknown setting(s) (expected TrainConfig "
                          "fields such as dataset, model, epochs, lr)")
    return config.replace(**absolute_paths({k: v for k, v in given.items() if v is not None}))


def train(config: TrainConfig | Mapping[str, Any] | None = None, *, data: Any = None,
          class_names: Sequence[str] | None = None, callbacks: Sequence[Any] = (),
          dataset: str | None = None, model: str | None = None, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, seed: int | None = None,
          preset: str | None = None, data_dir: str | os.PathLike[str] | None = None,
          limit_train: int | None = None, limit_test: int | None = None,
          val_split: float | None = None, test_split: float | None = None,
          out: str | os.PathLike[str] | None = None,
          resume: str | os.PathLike[str] | None = None,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
          verbose: bool = True, **settings: Any) -> Run:
    """Train a model, as `tfcnn train` does, and return its `Run`.

    Arguments: `config`, a `TrainConfig` or a dict of settings (the keywords override it);
    the settings as keywords: those named here and every other `TrainConfig` field
    (`schedule`, `shift`, `precision`, ...; None: the default, or the `preset`'s, which fills
    in a recipe under the ones given); `out`: the run directory (default
    `runs/<dataset>-<model>-<time>`); `resume`: a run directory to continue (then only
    `epochs`, `data_dir`, `steps_per_call` and `cache` may be given); `on_epoch_end`: called
    with each epoch's record (the metrics.json entry plus "images_per_second"); `verbose`:
    a progress bar per epoch (a widget in Jupyter with `pip install tfcnn[notebook]`, a text
    bar on a terminal, none when stderr is a file or pipe), none when False.

    `data`: images in memory instead of `dataset`: `(x, y)` numpy arrays (uint8 N×H×W or
    N×H×W×C with C 1 or 3, or floats in [0, 1]; integer labels 0 .. classes - 1), from which
    `test_split` of each class (default 0.1) is the test set; `((x, y), (x_test, y_test))`;
    or a `tf.data.Dataset` of (image, label), read into memory once (see `tfcnn.api.arrays`).
    `class_names` names the classes (default "0", "1", ...). config.json records the dataset
    as "arrays", and RUN/arrays.json the class names and a digest of the arrays: such a run
    resumes only from Python with the same arrays, `tfcnn.train(resume=RUN, data=...)`.

    `callbacks`: `keras.callbacks.Callback` objects, called as `keras.Model.fit` calls them
    at each epoch, with Keras-style logs ("loss", "accuracy", "val_loss", "val_accuracy",
    "test_loss", "test_accuracy"); `self.model.stop_training = True` ends training after the
    epoch (see `tfcnn.api.callbacks`).

    Returns the `Run`; raises a `TfcnnError` subclass for bad settings or data, and
    `TrainingInterrupted` after saving a checkpoint when stopped by SIGINT/SIGTERM.

    Example:
        >>> run = tfcnn.train(preset="fast", data_dir=data_dir, epochs=1, limit_train=6000,
        ...                   limit_test=1000, seed=1, out=tmp / "fast", verbose=False)
        >>> run.config.preset, run.metrics["test_accuracy"] > 0.8
        ('fast', True)

        From arrays in memory (here 600 MNIST training images and the test set):

        >>> (x, y), test, names = tfcnn.datasets.load("mnist", data_dir)
        >>> run = tfcnn.train(data=((x[:600], y[:600]), test), class_names=names,
        ...                   model="8C3-P2-D10", epochs=1, seed=1, out="from-arrays",
        ...                   verbose=False)
        >>> run.config.dataset, len(run.history)
        ('arrays', 1)
    """
    from tfcnn.api.arrays import ARRAYS, NOT_WITH_DATA
    from tfcnn.api.callbacks import KerasCallbacks, check_callbacks, with_callbacks

    keras_callbacks = check_callbacks(callbacks)
    named = {"dataset": dataset, "model": model, "epochs": epochs, "batch_size": batch_size,
             "lr": lr, "seed": seed, "preset": preset, "data_dir": data_dir,
             "limit_train": limit_train, "limit_test": limit_test, "val_split": val_split,
             "test_split": test_split}
    given = {**settings, **{k: v for k, v in named.items() if v is not None}}
    if data is not None:
        if clash := [k for k in NOT_WITH_DATA if given.get(k) is not None]:
            raise ConfigError(f"{', '.join(clash)}: not with data= (the arrays are the data)")
        if resume is None:
            given["dataset"] = ARRAYS
    if out is not None:
        if resume is not None:
            raise ConfigError("out: not allowed when resuming (the run stays where it is)")
        given["out"] = os.fspath(out)
    run_config = _settings_of(config, given, resume)
    driven = KerasCallbacks(keras_callbacks, run_config.epochs) if keras_callbacks else None
    hooks = with_callbacks(Hooks(progress=progress_bars(verbose, run_config.epochs),
                                 epoch_end=on_epoch_end), driven)
    result = start_training(run_config, resume=resume, hooks=hooks, data=data,
                            class_names=class_names)
    if driven is not None:
        driven.train_end(Run(result.run_dir).metrics)
    return Run(result.run_dir)
