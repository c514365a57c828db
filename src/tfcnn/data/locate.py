"""Where a dataset comes from: a data dir, else Keras's cache, system copies, our cache, a download.

An explicit data dir (`--data-dir`, a run's config.json) is the only place looked in:
a folder without the dataset is an error naming it. Without one, places are tried in a
fixed order; the first that holds any of the dataset's files wins and its copy is then
fully verified (IDX structure, SHA-256, dtype and shape, counts, label range). A problem
there raises DatasetError rather than moving on, so a corrupt local copy is never
silently passed over. Downloads reach tfcnn's cache only after all files have been
verified; a failed download leaves nothing behind, and one that was killed is cleaned
up by the next run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.data import cifar, cifar_keras
from tfcnn.data.download import (
    Limits,
    clean_stale_temps,
    deadline_from_env,
    download_dataset,
    mirror_list,
)
from tfcnn.data.idx_copies import find_file, load_idx_folder, load_npz
from tfcnn.data.registry import DatasetInfo, get_dataset_info


@dataclass(frozen=True)
class LoadedDataset:
    """A verified dataset in memory: uint8 images (N, H, W) or (N, H, W, C), uint8 labels (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    # A validation split of the training set (--val-split on a registered dataset), or None.
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclass(frozen=True)
class _Place:
    label: str  # how the "looked in" list names it
    path: Path | None  # a folder of IDX files, or an .npz when `npz`
    found: bool
    npz: bool = False
    keras_python: bool = False  # Keras's CIFAR-10 Python version (cifar_keras)


def _resolve(name: str | DatasetInfo) -> DatasetInfo:
    return name if isinstance(name, DatasetInfo) else get_dataset_info(name)


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def tfcnn_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """tfcnn's cache root: `$XDG_CACHE_HOME/tfcnn`, default `~/.cache/tfcnn`."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".cache"
    return base / "tfcnn"


def keras_datasets_dir(env: Mapping[str, str] | None = None) -> Path:
    """Keras's download folder: `$KERAS_HOME/datasets`, default `~/.keras/datasets`."""
    env = os.environ if env is None else env
    keras_home = env.get("KERAS_HOME")
    return (Path(keras_home) if keras_home else _home(env) / ".keras") / "datasets"


def _copy_in(folder: Path, info: DatasetInfo) -> Path | None:
    """What `folder` holds of the dataset: itself (IDX files), or CIFAR's archive or folder."""
    if info.format == "cifar":
        return cifar.find_copy(folder, info)
    return folder if any(find_file(folder, f) is not None for f in info.files) else None


def _data_dir_folders(root: Path, info: DatasetInfo) -> list[Path]:
    return [root / d for d in info.dir_names] + [root]


def _data_dir_place(label: str, root: Path, info: DatasetInfo) -> _Place:
    for folder in _data_dir_folders(root, info):
        copy = _copy_in(folder, info)
        if copy is not None:
            return _Place(label, copy, True)
    return _Place(f"{label} (no files)", root, False)


def _expected_files(info: DatasetInfo) -> str:
    if info.format == "cifar" and info.archive is not None:
        return f"{info.archive.filename} or its extracted {info.archive_dir}/ folder"
    return f"the four IDX files ({', '.join(f.filename for f in info.files)})"


def _explicit_place(info: DatasetInfo, data_dir: str | os.PathLike[str], origin: str) -> _Place:
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(data_dir))))
    label = f"{origin} {root}"
    if not root.is_dir():
        raise DatasetError(f"{label}: no such directory")
    place = _data_dir_place(label, root, info)
    if not place.found:
        looked = ", ".join(str(p) for p in _data_dir_folders(root, info))
        raise DatasetError(f"{label}: holds no copy of {info.name} (looked in {looked} for "
                           f"{_expected_files(info)}). Fix: point {origin} at the folder that "
                           "holds them, or leave it out to search TFCNN_DATA_DIR, the caches "
                           "and then download")
    return place


def check_data_dir(name: str | DatasetInfo, data_dir: str | os.PathLike[str],
                   origin: str = "--data-dir") -> Path:
    """The copy of the dataset in `data_dir` (existence only, nothing read), else DatasetError.

    Lets a command refuse a folder without the dataset before it loads TensorFlow.
    """
    place = _explicit_place(_resolve(name), data_dir, origin)
    assert place.path is not None
    return place.path


def _places(info: DatasetInfo, data_dir: str | os.PathLike[str] | None,
            env: Mapping[str, str], origin: str = "--data-dir") -> list[_Place]:
    if data_dir is not None:
        # A folder the user named is the only place: never fall through to a download.
        return [_explicit_place(info, data_dir, origin)]
    places = []
    env_dir = env.get("TFCNN_DATA_DIR")
    if env_dir:
        places.append(_data_dir_place(f"TFCNN_DATA_DIR={env_dir}", Path(env_dir), info))
    else:
        places.append(_Place("TFCNN_DATA_DIR (not set)", None, False))
    if info.keras_cache:
        path = keras_datasets_dir(env) / info.keras_cache
        if path.suffix == ".npz":
            places.append(_Place(str(path), path, path.is_file(), npz=True))
        else:
            places.append(_folder_place(str(path), path, info))
    if info.format == "cifar":
        copy = cifar_keras.find_keras_copy(keras_datasets_dir(env))
        if copy is not None:
            places.append(_Place(str(copy), copy, True, keras_python=True))
    for d in info.system_dirs:
        places.append(_folder_place(d, Path(d), info))
    cache = tfcnn_cache_dir(env) / info.name
    places.append(_folder_place(str(cache), cache, info))
    return places


def _folder_place(label: str, folder: Path, info: DatasetInfo) -> _Place:
    copy = _copy_in(folder, info)
    return _Place(label, folder if copy is None else copy, copy is not None)


def _loaded(info: DatasetInfo, arrays: Mapping[str, np.ndarray], source: str) -> LoadedDataset:
    return LoadedDataset(name=info.name, x_train=arrays["train_images"],
                         y_train=arrays["train_labels"], x_test=arrays["test_images"],
                         y_test=arrays["test_labels"], class_names=tuple(info.class_names),
                         source=source)


def _load_place(place: _Place, info: DatasetInfo) -> dict[str, np.ndarray]:
    assert place.path is not None
    if place.keras_python:
        return cifar_keras.load_keras_copy(place.path, info)
    if info.format == "cifar":
        return cifar.load_copy(place.path, info)
    return load_npz(place.path, info) if place.npz else load_idx_folder(place.path, info)


def _download(info: DatasetInfo, cache: Path, urls: Sequence[str], limits: Limits,
              progress: bool) -> dict[str, np.ndarray]:
    if info.format == "cifar":
        return cifar.download_cifar(info, cache, urls, limits, progress)
    return download_dataset(info, cache, urls, limits, progress)


def load_dataset(name: str | DatasetInfo, data_dir: str | os.PathLike[str] | None = None, *,
                 env: Mapping[str, str] | None = None, download: bool = True,
                 mirrors: Sequence[str] | None = None, progress: bool = True,
                 timeout: float = 30.0, deadline: float | None = None,
                 origin: str = "--data-dir") -> LoadedDataset:
    """Find, verify and load a dataset.

    With `data_dir`, only that folder (or its sub-folder named after the dataset) is
    used; messages name it as `origin` (the flag or config field it came from) with its
    absolute path. Without it, the first of these holding any of the dataset's files
    wins: `$TFCNN_DATA_DIR`, Keras's cache, system copies, tfcnn's cache, then a download
    into tfcnn's cache (mirrors: `mirrors`, else `$TFCNN_MIRRORS`, else the registry's;
    each file within `deadline` seconds, else `$TFCNN_DOWNLOAD_DEADLINE`, else one from
    its size; no read waiting over `timeout`). `env` stands in for os.environ throughout.
    """
    info = _resolve(name)
    env = os.environ if env is None else env
    cache = tfcnn_cache_dir(env) / info.name
    clean_stale_temps(cache)
    limits = Limits(timeout, deadline if deadline is not None else deadline_from_env(env))
    places = _places(info, data_dir, env, origin)
    for place in places:
        if not place.found or place.path is None:
            continue
        try:
            arrays = _load_place(place, info)
        except DatasetError as e:
            if not place.path.is_relative_to(cache):
                raise
            raise DatasetError(f"{e}; delete {cache} to download it again") from e
        return _loaded(info, arrays, str(place.path))
    if download:
        try:
            urls = mirror_list(info, env, mirrors)
            arrays = _download(info, cache, urls, limits, progress)
            return _loaded(info, arrays, f"download -> {cache}")
        except DatasetError as e:
            outcome = f"download failed ({e})"
    else:
        outcome = "download disabled"
    raise DatasetError(f"dataset {info.name!r} not found; looked in: "
                       f"{', '.join(p.label for p in places)}; {outcome}. Fix: pass --data-dir "
                       f"DIR with {_expected_files(info)}, or set TFCNN_DATA_DIR, or "
                       "connect to the internet.")


def describe_source(name: str | DatasetInfo, data_dir: str | os.PathLike[str] | None = None,
                    *, env: Mapping[str, str] | None = None,
                    mirrors: Sequence[str] | None = None, origin: str = "--data-dir") -> str:
    """Where `load_dataset` would load from; checks only that files exist (no download)."""
    info = _resolve(name)
    env = os.environ if env is None else env
    try:
        places = _places(info, data_dir, env, origin)
    except DatasetError as e:  # an explicit folder without the dataset
        return "not found: " + str(e).split(". Fix: ")[0]
    for place in places:
        if place.found:
            return str(place.path)
    cache = tfcnn_cache_dir(env) / info.name
    urls = mirror_list(info, env, mirrors)
    if not urls:
        return f"not found locally; no mirrors configured to download into {cache}"
    return f"not found locally; would download from {' or '.join(urls)} into {cache}"
