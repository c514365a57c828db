"""Which loader a `--dataset` value calls: a registered dataset or an image folder.

`mnist` / `fashion_mnist` / `cifar10` come from `locate` (verified files); `folder:PATH`
from `folders` (one sub-folder per class). Both give a `LoadedDataset`. A `--data-dir`
is stored absolute (`absolute_data_dir`), so a run resumes or evaluates from any folder.
`--val-split` is a validation split of the training images of any dataset; a folder's own
test set is its `test/` (or `val/`) sub-folder, or else `--test-split` of each class.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.folders import (
    class_folder_names,
    load_image_folder,
    parse_folder_spec,
    parse_image_size,
    split_dirs,
)
from tfcnn.data.locate import LoadedDataset, check_data_dir, load_dataset
from tfcnn.data.registry import get_dataset_info
from tfcnn.data.split import stratified_split

DEFAULT_TEST_SPLIT = 0.1  # of each class, for folders without a test/ split
# --cache: whether a folder is streamed from disk (None: by size, see folders.MEMORY_BYTES).
STREAMS: dict[str | None, bool | None] = {"memory": False, "disk": True, "stream": True,
                                          None: None}


def absolute_data_dir(text: str | os.PathLike[str]) -> str:
    """A `--data-dir` value as an absolute, normalised path (`~` expanded), to store.

    A relative path kept as typed would point elsewhere when the run is resumed or
    evaluated from another folder.
    """
    return os.path.abspath(os.path.expanduser(os.fspath(text)))


def check_dataset_setting(config: TrainConfig, data_dir_origin: str = "--data-dir") -> None:
    """Cheap checks of the dataset settings, before TensorFlow loads.

    A `data_dir` must hold the dataset (nothing is read yet); messages name it as
    `data_dir_origin`, the flag or config field it came from.
    """
    root = parse_folder_spec(config.dataset)
    if root is None:
        get_dataset_info(config.dataset)
        if config.data_dir is not None:
            check_data_dir(config.dataset, config.data_dir, data_dir_origin)
        folder_only = {"--image-size": config.image_size is not None,
                       "--rgb": not config.grayscale,
                       "--test-split": config.test_split is not None,
                       "--cache": config.cache is not None}
        given = [flag for flag, is_set in folder_only.items() if is_set]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for image-folder datasets "
                              f"(--dataset folder:PATH), not {config.dataset!r}")
        return
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (--dataset folder:PATH needs a folder "
                           "with one sub-folder per class)")
    dirs = split_dirs(root)  # also refuses a ROOT with train/ but no test/ or val/
    if config.test_split is not None and dirs is not None:
        raise ConfigError(f"--test-split: {root} has its own test split "
                          f"({dirs[1].name}/); leave --test-split out")
    parse_image_size(config.image_size or "28")


def with_validation_split(dataset: LoadedDataset, fraction: float | None,
                          seed: int) -> LoadedDataset:
    """The dataset with a stratified, seeded `fraction` of its training set moved to x_val."""
    if not fraction:
        return dataset
    kept, held = stratified_split(dataset.y_train, fraction, seed, len(dataset.class_names))
    return dataclasses.replace(dataset, x_train=dataset.x_train[kept],
                               y_train=dataset.y_train[kept], x_val=dataset.x_train[held],
                               y_val=dataset.y_train[held])


def class_names_of(config: TrainConfig) -> tuple[str, ...]:
    """The class names of `config`'s dataset, known before any image is read: a registered
    dataset's, or an image folder's sub-folder names (of its train/ split if it has one)."""
    root = parse_folder_spec(config.dataset)
    if root is None:
        return get_dataset_info(config.dataset).class_names
    dirs = split_dirs(root)
    return class_folder_names(root if dirs is None else dirs[0])


def load_training_data(config: TrainConfig, data_dir_origin: str = "--data-dir",
                       ) -> tuple[LoadedDataset, list[tuple[str, str]]]:
    """The dataset `config` names, and the (file, reason) pairs of any skipped images.

    `data_dir_origin` names where `config.data_dir` came from in messages (the flag, or
    "RUN/config.json data_dir" for a resumed run).
    """
    root = parse_folder_spec(config.dataset)
    seed = config.seed or 0
    if root is None:
        dataset = load_dataset(config.dataset, config.data_dir, origin=data_dir_origin)
        return with_validation_split(dataset, config.val_split, seed), []
    options = {"image_size": parse_image_size(config.image_size or "28"),
               "grayscale": config.grayscale, "seed": seed,
               "stream": STREAMS[config.cache]}
    dirs = split_dirs(root)
    if dirs is None:
        test_split = DEFAULT_TEST_SPLIT if config.test_split is None else config.test_split
        folder = load_image_folder(root, test_split=test_split, **options)
        dataset, skipped = folder.dataset, folder.skipped
    else:
        dataset, skipped = _split_folders(root, *dirs, options)
    return with_validation_split(dataset, config.val_split, seed), skipped


def _split_folders(root: Path, train_dir: Path, test_dir: Path, options: dict[str, Any]
                   ) -> tuple[LoadedDataset, list[tuple[str, str]]]:
    """ROOT/train as the training set and ROOT/test (or val) as the test set."""
    train = load_image_folder(train_dir, test_split=0, **options)
    # The test images in one order whatever the run's seed (that of `evaluate --dataset
    # folder:ROOT/test`), so runs with different seeds (an ensemble's members) share them.
    test = load_image_folder(test_dir, test_split=0, **{**options, "seed": 0})
    mine, theirs = train.dataset.class_names, test.dataset.class_names
    if mine != theirs:
        raise DatasetError(f"{test_dir}: class folders {list(theirs)} differ from "
                           f"{train_dir}'s {list(mine)}")
    dataset = dataclasses.replace(train.dataset, name=f"folder:{root}",
                                  x_test=test.dataset.x_train, y_test=test.dataset.y_train,
                                  source=str(Path(root).resolve()))
    return dataset, [*train.skipped, *test.skipped]
