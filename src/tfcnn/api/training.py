"""Training from Python: `tfcnn.train(...) -> Run`, `tfcnn.open_run(path) -> Run`.

`training_config` and `start_training` are the steps `tfcnn train` takes too: the CLI
builds its settings from flags, the API from keywords, and both run the same code. Nothing
here prints: a notebook gets a `tqdm.auto` progress bar (on stderr), the CLI its own lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.rundir import RunDir, read_config, read_epoch_records
from tfcnn.data.source import absolute_data_dir

# Settings a resumed run may change; the rest come from the run's config.json.
RESUMABLE = ("epochs", "data_dir", "steps_per_call", "cache")
FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _keyword(name: str) -> str:
    return name


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
                    name: Callable[[str], str] = _keyword) -> TrainConfig:
    """The `TrainConfig` for a new run (a preset's settings under the given ones) or for
    resuming `resume` (its config.json, with only `RESUMABLE` settings changed).

    `name` spells a setting in error messages (the CLI passes its flag names).
    """
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
                   name: Callable[[str], str] = _keyword) -> str:
    """Cheap checks before TensorFlow loads; returns the model's name for the run directory."""
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


def start_training(config: TrainConfig, *, resume: str | os.PathLike[str] | None = None,
                   progress: Callable[[int, int, int], Any] | None = None,
                   epoch_end: Callable[[dict[str, Any]], None] | None = None,
                   on_start: Callable[[Any], None] | None = None,
                   on_member: Callable[[str], None] | None = None,
                   note: Callable[[str], None] | None = None,
                   ensemble: int | None = None, name: Callable[[str], str] = _keyword) -> Any:
    """Train (or resume) `config`; returns the training layer's `RunResult` or
    `EnsembleResult`. `progress`, `epoch_end`, `on_start`, `on_member`, `note` (one-line
    remarks, e.g. batch-norm statistics recomputed): the loop's hooks;
    `name` spells settings in error messages."""
    model_name = check_settings(config, ensemble, name)
    from tfcnn.core.tfenv import import_tensorflow
    from tfcnn.training.strategy import create_distribution

    # First: a multi-worker strategy must be created before TensorFlow sets up its devices.
    distribution = create_distribution(config.strategy)
    import_tensorflow()
    from tfcnn.core.rundir import default_run_path
    from tfcnn.training.loop import Hooks

    if resume is not None:
        run_path = Path(resume)
    else:
        run_path = Path(config.out) if config.out else default_run_path(config, model_name)
    hooks = Hooks(progress, epoch_end, note)
    if ensemble is not None:
        from tfcnn.training.ensemble import train_ensemble

        return train_ensemble(config, run_path, ensemble, hooks, resume=resume is not None,
                              on_start=on_start, on_member=on_member,
                              distribution=distribution)
    from tfcnn.training.run import train_run

    return train_run(config, run_path, hooks, resume=resume is not None, on_start=on_start,
                     distribution=distribution)


class Run:
    """A run directory: its settings, metrics and model.

    Example:
        >>> run = tfcnn.open_run("runs/mnist-fast-20261202-101500")   # doctest: +SKIP
        >>> run.metrics["test_accuracy"], len(run.history)             # doctest: +SKIP
        (0.9912, 2)
        >>> run.load().predict("digit.png")[0].label                   # doctest: +SKIP
        '7'
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
        >>> run = tfcnn.open_run("runs/mnist-tutorial-20261129-075518")  # doctest: +SKIP
        >>> run.config.epochs                                             # doctest: +SKIP
        5
    """
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    if not run.config.is_file():
        raise RunDirError(f"{run.path}: not a tfcnn run directory (no config.json)")
    return Run(run.path)


def _notebook_progress(verbose: bool) -> Callable[[int, int, int], Any] | None:
    if not verbose:
        return None
    from tqdm.auto import tqdm

    def progress(epoch: int, steps: int, done: int) -> Any:
        return tqdm(total=steps, initial=done, desc=f"Epoch {epoch}", unit="step",
                    leave=False)
    return progress


def train(*, out: str | os.PathLike[str] | None = None,
          resume: str | os.PathLike[str] | None = None,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
          verbose: bool = True, **settings: Any) -> Run:
    """Train a model, as `tfcnn train` does, and return its `Run`.

    Arguments: every `TrainConfig` field as a keyword (`dataset`, `model`, `epochs`,
    `batch_size`, `lr`, `seed`, `preset`, `data_dir`, `limit_train`, `limit_test`, ...;
    `preset` fills in a recipe under the ones given); `out`: the run directory (default
    `runs/<dataset>-<model>-<time>`); `resume`: a run directory to continue (then only
    `epochs`, `data_dir`, `steps_per_call` and `cache` may be given); `on_epoch_end`: called with
    each epoch's record (the metrics.json entry plus "images_per_second"); `verbose`: a
    progress bar per epoch (tqdm.auto: a widget in a notebook), none when False.

    Returns the `Run`; raises a `TfcnnError` subclass for bad settings or data, and
    `TrainingInterrupted` after saving a checkpoint when stopped by SIGINT/SIGTERM.

    Example:
        >>> run = tfcnn.train(preset="fast", data_dir="../shared/datasets",
        ...                   limit_train=6000, seed=1, verbose=False)  # doctest: +SKIP
        >>> run.metrics["test_accuracy"]                               # doctest: +SKIP
        0.9652
    """
    if out is not None:
        if resume is not None:
            raise ConfigError("out: not allowed when resuming (the run stays where it is)")
        settings["out"] = os.fspath(out)
    config = training_config(settings, resume)
    result = start_training(config, resume=resume, progress=_notebook_progress(verbose),
                            epoch_end=on_epoch_end)
    return Run(result.run_dir)
