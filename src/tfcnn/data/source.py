"""Which loader a `--dataset` value calls: a registered dataset or an image folder.

`mnist` / `fashion_mnist` come from `locate` (verified IDX files); `folder:PATH` from
`folders` (one sub-folder per class). Both give a `LoadedDataset`.
"""

from __future__ import annotations

from tfcnn.config import TrainConfig
from tfcnn.data.folders import load_image_folder, parse_folder_spec, parse_image_size
from tfcnn.data.locate import LoadedDataset, load_dataset
from tfcnn.data.registry import get_dataset_info
from tfcnn.errors import ConfigError, DatasetError

DEFAULT_VAL_SPLIT = 0.1


def check_dataset_setting(config: TrainConfig) -> None:
    """Cheap checks of the dataset settings, before TensorFlow loads."""
    root = parse_folder_spec(config.dataset)
    if root is None:
        get_dataset_info(config.dataset)
        folder_only = {"--image-size": config.image_size is not None,
                       "--rgb": not config.grayscale, "--val-split": config.val_split is not None}
        given = [flag for flag, is_set in folder_only.items() if is_set]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for image-folder datasets "
                              f"(--dataset folder:PATH), not {config.dataset!r}")
        return
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (--dataset folder:PATH needs a folder "
                           "with one sub-folder per class)")
    parse_image_size(config.image_size or "28")


def load_training_data(config: TrainConfig) -> tuple[LoadedDataset, list[tuple[str, str]]]:
    """The dataset `config` names, and the (file, reason) pairs of any skipped images."""
    root = parse_folder_spec(config.dataset)
    if root is None:
        return load_dataset(config.dataset, config.data_dir), []
    folder = load_image_folder(
        root, image_size=parse_image_size(config.image_size or "28"),
        grayscale=config.grayscale,
        val_split=DEFAULT_VAL_SPLIT if config.val_split is None else config.val_split,
        seed=config.seed or 0)
    return folder.dataset, folder.skipped
