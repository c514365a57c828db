"""Which loader a `--dataset` value calls: a registered dataset or an image folder.

`mnist` / `fashion_mnist` / `cifar10` come from `locate` (verified files); `folder:PATH`
from `folders` (one sub-folder per class). Both give a `LoadedDataset`. A `--data-dir`
is stored absolute (`absolute_data_dir`), so a run resumes or evaluates from any folder.
`--val-split` means the held-out test part of a folder, but a validation split of a
registered dataset's training set (which has its own test set, kept for the final report).
"""

from __future__ import annotations

import dataclasses
import os

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.folders import load_image_folder, parse_folder_spec, parse_image_size
from tfcnn.data.locate import LoadedDataset, check_data_dir, load_dataset
from tfcnn.data.registry import get_dataset_info
from tfcnn.data.split import stratified_split

DEFAULT_VAL_SPLIT = 0.1


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
                       "--rgb": not config.grayscale}
        given = [flag for flag, is_set in folder_only.items() if is_set]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for image-folder datasets "
                              f"(--dataset folder:PATH), not {config.dataset!r}")
        return
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (--dataset folder:PATH needs a folder "
                           "with one sub-folder per class)")
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


def load_training_data(config: TrainConfig, data_dir_origin: str = "--data-dir",
                       ) -> tuple[LoadedDataset, list[tuple[str, str]]]:
    """The dataset `config` names, and the (file, reason) pairs of any skipped images.

    `data_dir_origin` names where `config.data_dir` came from in messages (the flag, or
    "RUN/config.json data_dir" for a resumed run).
    """
    root = parse_folder_spec(config.dataset)
    if root is None:
        dataset = load_dataset(config.dataset, config.data_dir, origin=data_dir_origin)
        return with_validation_split(dataset, config.val_split, config.seed or 0), []
    folder = load_image_folder(
        root, image_size=parse_image_size(config.image_size or "28"),
        grayscale=config.grayscale,
        val_split=DEFAULT_VAL_SPLIT if config.val_split is None else config.val_split,
        seed=config.seed or 0)
    return folder.dataset, folder.skipped
