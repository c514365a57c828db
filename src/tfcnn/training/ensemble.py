"""`tfcnn train --ensemble N`: N members of one config, trained one after another, and their
averaged test accuracy.

    ENSEMBLE_DIR/
      config.json     the settings the members share; member k trains with seed + k - 1
      ensemble.json   {"size", "seed", "dataset", "model", "members": [{"path", "seed",
                      "test_accuracy"}], "test_accuracy", "test_loss", "num_test_images"}
                      (accuracies null until every member has finished)
      member-1/ ...   ordinary run directories (config.json, metrics.json, model.keras, ...)

Models that differ only in their seed (initial weights, data order, dropout) make partly
different mistakes, so averaging their class probabilities corrects some of them.
`--resume ENSEMBLE_DIR` continues the unfinished member and trains those not yet started;
finished members are left as they are. The members are tested on the test set training
uses (`--limit-test` included); `tfcnn evaluate ENSEMBLE_DIR` evaluates on the whole of it.

TensorFlow is imported only inside `train_ensemble`, so `resolve_model_files` (what
`tfcnn evaluate` calls on its arguments) stays instant.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, RunDirError, TrainingInterrupted
from tfcnn.core.fsutil import atomic_write_json
from tfcnn.core.rundir import RunDir, resolve_model_file
from tfcnn.core.runlock import locked_run
from tfcnn.data.folders import parse_folder_spec, split_dirs

if TYPE_CHECKING:
    from tfcnn.training.loop import Hooks
    from tfcnn.training.run import RunInfo
    from tfcnn.training.strategy import Distribution

ENSEMBLE_JSON = "ensemble.json"


def member_path(ensemble_dir: Path, index: int) -> Path:
    """The run directory of member `index` (1-based)."""
    return Path(ensemble_dir) / f"member-{index}"


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_JSON).is_file()


def read_ensemble(ensemble_dir: str | Path) -> dict[str, Any]:
    """ENSEMBLE_DIR/ensemble.json, checked for the fields the commands rely on."""
    path = Path(ensemble_dir) / ENSEMBLE_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found (is {path.parent} a tfcnn ensemble directory?)"
                          ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not readable JSON ({exc})") from None
    size = data.get("size") if isinstance(data, dict) else None
    if (not isinstance(size, int) or size < 1 or not isinstance(data.get("members"), list)
            or len(data["members"]) != size
            or not all(isinstance(m, dict) and isinstance(m.get("path"), str)
                       for m in data["members"])):
        raise RunDirError(f"{path}: expected {{\"size\": N, \"members\": [N x {{\"path\": ...}}]"
                          ", ...}")
    return data


def ensemble_size(requested: int | None, resume: str | Path | None) -> int | None:
    """How many members `tfcnn train` trains: --ensemble N, or a resumed ensemble's own size;
    None for one plain run. Checked before TensorFlow loads."""
    if requested is not None and (not isinstance(requested, int) or requested < 1):
        raise ConfigError(f"--ensemble: expected a positive integer, got {requested}")
    if resume is None:
        return requested
    if not is_ensemble_dir(resume):
        if requested is not None:
            raise ConfigError(f"--ensemble {requested}: {resume} holds no {ENSEMBLE_JSON} "
                              "(resume a single run without --ensemble)")
        return None
    recorded = read_ensemble(resume)["size"]
    if requested is not None and requested != recorded:
        raise ConfigError(f"--ensemble {requested}: {resume} is an ensemble of {recorded} "
                          "(omit --ensemble to resume it)")
    return recorded


def check_ensemble(size: int, config: TrainConfig) -> None:
    """What an ensemble refuses (called before TensorFlow loads, and again by train_ensemble)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"--ensemble: expected a positive integer, got {size}")
    root = parse_folder_spec(config.dataset)
    if root is not None and split_dirs(root) is None:
        raise ConfigError("--ensemble: not for an image folder without its own test/ (or "
                          "val/) split: its held-out images depend on the seed, so members "
                          "would share no test set")


def resolve_model_files(sources: Sequence[str | Path]) -> list[Path]:
    """The `.keras` files for `tfcnn evaluate`'s arguments: each a run directory, a model
    file, or an ensemble directory (which gives each member's model). A model given twice
    is an error: it would count double in the average."""
    files: list[Path] = []
    for source in sources:
        if is_ensemble_dir(source) and not RunDir(Path(source)).model.exists():
            members = read_ensemble(source)["members"]
            files += [resolve_model_file(Path(source) / m["path"]) for m in members]
        else:
            files.append(resolve_model_file(source))
    seen: set[Path] = set()
    for file in files:
        if file.resolve() in seen:
            raise ConfigError(f"{file}: given more than once (each model counts once in an "
                              "ensemble)")
        seen.add(file.resolve())
    return files


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: Path
    members: list[dict[str, Any]]  # {"path", "seed", "test_accuracy"}, in member order
    test_accuracy: float | None    # None on a multi-worker run's other workers
    test_loss: float | None


def _finished(run: RunDir, epochs: int) -> bool:
    # Every epoch recorded and a final test accuracy (a run with a validation split tests
    # only after its last epoch): nothing is left for a resume to do.
    try:
        metrics = json.loads(run.metrics_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (len(metrics.get("epochs", [])) >= epochs and metrics.get("test_accuracy") is not None
            and run.model.is_file())


def _plan(config: TrainConfig, size: int) -> dict[str, Any]:
    """ensemble.json before its test figures are known (they stay null until the end)."""
    assert config.seed is not None
    return {"size": size, "seed": config.seed, "dataset": config.dataset, "model": config.model,
            "members": [{"path": member_path(Path("."), k).name, "seed": config.seed + k - 1,
                         "test_accuracy": None} for k in range(1, size + 1)],
            "test_accuracy": None, "test_loss": None, "num_test_images": None}


def _start(config: TrainConfig, ensemble_dir: Path, size: int, resume: bool,
           dist: Distribution) -> TrainConfig:
    """The shared config (seed drawn if none was given), with the plan written on a new run."""
    from tfcnn.core.rundir import library_versions, write_config

    config = config.replace(out=str(ensemble_dir))  # where it is now, should it have moved
    if resume:
        if ensemble_size(size, ensemble_dir) is None:  # checks the recorded size
            raise RunDirError(f"{ensemble_dir}: holds no {ENSEMBLE_JSON} (not an ensemble)")
        if dist.chief:  # as a resumed run's config.json does, record a raised --epochs
            write_config(RunDir(ensemble_dir), config, library_versions())
        return config
    if (ensemble_dir / ENSEMBLE_JSON).exists() or RunDir(ensemble_dir).config.exists():
        raise RunDirError(f"{ensemble_dir}: already holds a run (use --resume {ensemble_dir} "
                          "to continue it, or choose another --out)")
    if config.seed is None:
        config = config.replace(seed=dist.chief_seed(secrets.randbelow(2**31)))
    if dist.chief:
        # ensemble.json first: it is what marks the folder as an ensemble for --resume,
        # which then reads the shared settings from config.json.
        atomic_write_json(ensemble_dir / ENSEMBLE_JSON, _plan(config, size))
        write_config(RunDir(ensemble_dir), config, library_versions())
    return config


def train_ensemble(config: TrainConfig, ensemble_dir: Path, size: int, hooks: Hooks, *,
                   resume: bool = False, on_start: Callable[[RunInfo], None] | None = None,
                   on_member: Callable[[str], None] | None = None,
                   distribution: Distribution | None = None) -> EnsembleResult:
    """Train `size` members of `config` into ENSEMBLE_DIR/member-k (seed + k - 1), then
    write ensemble.json with each member's and the ensemble's test figures.

    `config` is the shared config: for a resume, ENSEMBLE_DIR/config.json's with any
    allowed overrides. `on_member` receives one line as each member starts or is skipped.
    """
    from tfcnn.training.strategy import create_distribution

    check_ensemble(size, config)
    ensemble_dir = Path(ensemble_dir)
    dist = distribution or create_distribution(config.strategy)
    # One process per ensemble (core/runlock.py); each member's run is locked too.
    with locked_run(ensemble_dir, enabled=dist.chief):
        return _train_members(config, ensemble_dir, size, hooks, resume, on_start, on_member,
                              dist)


def _train_members(config: TrainConfig, ensemble_dir: Path, size: int, hooks: Hooks,
                   resume: bool, on_start: Callable[[RunInfo], None] | None,
                   on_member: Callable[[str], None] | None,
                   dist: Distribution) -> EnsembleResult:
    """train_ensemble's work, with the ensemble directory locked."""
    from tfcnn.data.source import load_training_data
    from tfcnn.evaluation.ensemble import model_probabilities, scores
    from tfcnn.models.trained import TrainedModel
    from tfcnn.models.tta import average_probabilities
    from tfcnn.training.run import train_run

    config = _start(config, ensemble_dir, size, resume, dist)
    assert config.seed is not None
    say = on_member or (lambda line: None)
    for k in range(1, size + 1):
        path = member_path(ensemble_dir, k)
        member = config.replace(seed=config.seed + k - 1, out=str(path))
        started = RunDir(path).config.exists()
        if resume and _finished(RunDir(path), member.epochs):
            say(f"Member {k}/{size}: {path} has finished (seed {member.seed})")
            continue
        say(f"Member {k}/{size}: {path} (seed {member.seed})"
            + (", resuming" if resume and started else ""))
        try:
            train_run(member, path, hooks, resume=resume and started, on_start=on_start,
                      distribution=dist)
        except TrainingInterrupted as exc:
            # The loop's advice names the member; the ensemble resumes from its own folder.
            where = str(exc).split("; continue with:")[0]
            raise TrainingInterrupted(f"ensemble member {k}/{size}: {where}; continue the "
                                      f"ensemble with: tfcnn train --resume {ensemble_dir}",
                                      exc.exit_code - 128) from None
    summary = _plan(config, size)
    if not dist.chief:  # the chief evaluates and writes; the others' folders are temporary
        return EnsembleResult(ensemble_dir, summary["members"], None, None)

    data, _ = load_training_data(config)
    images, labels = data.x_test[:config.limit_test], data.y_test[:config.limit_test]
    member_probs = []
    for k, record in enumerate(summary["members"], start=1):
        model = TrainedModel.load(RunDir(member_path(ensemble_dir, k)).model)
        member_probs.append(model_probabilities(model, images))
        record["test_accuracy"] = scores(member_probs[-1], labels)["test_accuracy"]
    summary.update(scores(average_probabilities(member_probs), labels),
                   num_test_images=int(len(labels)))
    atomic_write_json(ensemble_dir / ENSEMBLE_JSON, summary)
    return EnsembleResult(ensemble_dir, summary["members"], summary["test_accuracy"],
                          summary["test_loss"])
