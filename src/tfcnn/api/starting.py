"""Starting a run from settings: what `tfcnn train` and `tfcnn.train` both call.

`start_training` checks the settings (before TensorFlow loads), creates the strategy, and
trains one run or an ensemble; with in-memory data (api/arrays.py) it draws the seed first,
since the held-out images depend on it, and records the arrays in RUN/arrays.json.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.core.spelling import spelled
from tfcnn.training.hooks import Hooks


def _keyword(name: str) -> str:
    return name


def check_resumable(config: TrainConfig, resume: str | os.PathLike[str] | None,
                    data: Any = None) -> None:
    """A run trained on in-memory arrays resumes only with them passed again (`data=`), and
    only such a run takes `data=` on resume."""
    from tfcnn.api.arrays import ARRAYS

    if resume is None:
        return
    if config.dataset == ARRAYS and data is None:
        raise RunDirError(f"{resume}: trained on in-memory arrays (tfcnn.train(data=...)); "
                          f"resume it from Python with the same arrays: "
                          f"tfcnn.train(resume={os.fspath(resume)!r}, data=...)")
    if config.dataset != ARRAYS and data is not None:
        raise ConfigError(f"data: {resume} was trained on {config.dataset}, not on in-memory "
                          "arrays")


def _run_path(config: TrainConfig, resume: str | os.PathLike[str] | None,
              model_name: str) -> Path:
    from tfcnn.core.rundir import default_run_path

    if resume is not None:
        return Path(resume)
    return Path(config.out) if config.out else default_run_path(config, model_name)


def start_training(config: TrainConfig, *, resume: str | os.PathLike[str] | None = None,
                   hooks: Hooks | None = None, on_start: Callable[[Any], None] | None = None,
                   on_member: Callable[[str], None] | None = None, data: Any = None,
                   class_names: Sequence[str] | None = None, ensemble: int | None = None,
                   name: Callable[[str], str] = _keyword) -> Any:
    """Train (or resume) `config`; returns the training layer's `RunResult` or
    `EnsembleResult`. `hooks`: how the loop reports (progress bars, epoch records, one-line
    notes, ...); `on_start`, `on_member`: the run's facts before its first epoch, a line
    as each ensemble member starts; `data`, `class_names`: in-memory data (api/arrays.py);
    `name` spells settings in error messages."""
    from tfcnn.api.arrays import ARRAYS

    check_resumable(config, resume, data)
    if data is not None and ensemble is not None:
        raise ConfigError("ensemble: not with data= (in-memory arrays)")
    if config.dataset == ARRAYS and data is None:
        raise ConfigError(f"{name('dataset')} {ARRAYS}: only with data= (in-memory arrays)")
    if data is None:
        from tfcnn.api.training import check_settings

        model_name = check_settings(config, ensemble, name)
    else:
        from tfcnn.spec.notation import resolve_model

        model_name, _ = resolve_model(config.model)
    run_path = _run_path(config, resume, model_name)
    arrays = _check_arrays(data, class_names, config, resume, run_path)
    from tfcnn.core.tfenv import import_tensorflow
    from tfcnn.training.strategy import create_distribution

    # First: a multi-worker strategy must be created before TensorFlow sets up its devices.
    distribution = create_distribution(config.strategy)
    import_tensorflow()
    hooks = hooks or Hooks()
    if ensemble is not None:
        from tfcnn.training.ensemble import train_ensemble

        with spelled(name):  # lower layers write some settings as flags
            return train_ensemble(config, run_path, ensemble, hooks, resume=resume is not None,
                                  on_start=on_start, on_member=on_member,
                                  distribution=distribution)
    from tfcnn.training.run import train_run

    dataset = None
    if arrays is not None:
        if config.seed is None:  # drawn here: the held-out images depend on it
            config = config.replace(seed=distribution.chief_seed(secrets.randbelow(2**31)))
        dataset = arrays.dataset(config)
        on_start = _recording(arrays, run_path, on_start)
    with spelled(name):  # lower layers write some settings as flags
        return train_run(config, run_path, hooks, resume=resume is not None,
                         on_start=on_start, dataset=dataset, distribution=distribution)


def _check_arrays(data: Any, class_names: Sequence[str] | None, config: TrainConfig,
                  resume: str | os.PathLike[str] | None, run_path: Path) -> Any:
    """`data=` checked (an `arrays.InMemoryData`, or None without data), and on resume
    checked against the run's RUN/arrays.json."""
    if data is None:
        return None
    from tfcnn.api.arrays import in_memory_data, saved_class_names

    if resume is not None and class_names is None:
        class_names = saved_class_names(run_path)
    arrays = in_memory_data(data, class_names, config)
    if resume is not None:
        arrays.check_resumes(run_path)
    return arrays


def _recording(arrays: Any, run_path: Path, on_start: Callable[[Any], None] | None
               ) -> Callable[[Any], None]:
    """`on_start`, after writing RUN/arrays.json as the run starts (the chief only)."""
    def started(info: Any) -> None:
        if info.chief:
            arrays.save(run_path)
        if on_start is not None:
            on_start(info)
    return started
