"""Where a dataset comes from: data dirs, Keras's cache, system copies, tfcnn's cache, a download.

Places are tried in a fixed order; the first that holds any of the dataset's files wins
and its copy is then fully verified (IDX structure, SHA-256, dtype and shape, counts,
label range). A problem there raises DatasetError rather than moving on, so a corrupt
local copy is never silently passed over. Downloads reach tfcnn's cache only after all
four files have been verified; a failed download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfcnn.core.errors import DatasetError
from tfcnn.data.download import download_dataset, mirror_list, one_line
from tfcnn.data.idx import read_idx_with_sha256, sha256_of_idx
from tfcnn.data.registry import (
    NPZ_KEYS,
    DatasetFile,
    DatasetInfo,
    check_array,
    check_splits,
    get_dataset_info,
    identify_digest,
)


@dataclass(frozen=True)
class LoadedDataset:
    """A verified dataset in memory: uint8 images (N, H, W) and uint8 labels (N,)."""

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


def _candidates(folder: Path, f: DatasetFile) -> tuple[Path, ...]:
    # A gunzipped copy (the name without .gz) is accepted too; content decides, not names.
    names = (f.filename, f.filename[:-3]) if f.filename.endswith(".gz") else (f.filename,)
    return tuple(folder / n for n in names)


def _find_file(folder: Path, f: DatasetFile) -> Path | None:
    for path in _candidates(folder, f):
        with contextlib.suppress(OSError):
            if path.is_file():
                return path
    return None


def _has_files(folder: Path, info: DatasetInfo) -> bool:
    return any(_find_file(folder, f) is not None for f in info.files)


def _data_dir_place(label: str, root: Path, info: DatasetInfo) -> _Place:
    for folder in [root / d for d in info.dir_names] + [root]:
        if _has_files(folder, info):
            return _Place(label, folder, True)
    return _Place(f"{label} (no files)", root, False)


def _places(info: DatasetInfo, data_dir: str | os.PathLike[str] | None,
            env: Mapping[str, str]) -> list[_Place]:
    places = []
    if data_dir is not None:
        places.append(_data_dir_place(f"--data-dir {os.fspath(data_dir)}", Path(data_dir), info))
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
            places.append(_Place(str(path), path, _has_files(path, info)))
    for d in info.system_dirs:
        places.append(_Place(d, Path(d), _has_files(Path(d), info)))
    cache = tfcnn_cache_dir(env) / info.name
    places.append(_Place(str(cache), cache, _has_files(cache, info)))
    return places


def _check_digest(actual: str, f: DatasetFile, source: str) -> None:
    if actual == f.sha256:
        return
    other = identify_digest(actual)
    what = f"it is {other[0]}'s {other[1]}" if other else "corrupt or not the official file"
    raise DatasetError(f"{source}: SHA-256 of the IDX content is {actual}, expected {f.sha256} "
                       f"({what})")


def _load_folder(folder: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    arrays, sources = {}, {}
    for f in info.files:
        path = _find_file(folder, f)
        if path is None:
            wanted = _candidates(folder, f)
            alt = f" (or {wanted[1].name})" if len(wanted) > 1 else ""
            raise DatasetError(f"{wanted[0]}: missing{alt}; {folder} holds some of "
                               f"{info.name}'s files, and all four are needed")
        arr, digest = read_idx_with_sha256(path)
        check_array(info, f.role, arr, str(path))
        _check_digest(digest, f, str(path))
        arrays[f.role], sources[f.role] = arr, str(path)
    check_splits(info, arrays, sources)
    return arrays


def _load_npz(path: Path, info: DatasetInfo) -> dict[str, np.ndarray]:
    arrays, sources = {}, {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for f in info.files:
                key = NPZ_KEYS[f.role]
                if key not in npz.files:
                    raise DatasetError(f"{path}: has no array {key!r} (holds "
                                       f"{', '.join(npz.files) or 'nothing'}; expected "
                                       f"{', '.join(NPZ_KEYS.values())})")
                arrays[f.role], sources[f.role] = npz[key], f"{path}[{key}]"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read as .npz ({one_line(e)})") from e
    for f in info.files:
        check_array(info, f.role, arrays[f.role], sources[f.role])
        _check_digest(sha256_of_idx(arrays[f.role]), f, sources[f.role])
    check_splits(info, arrays, sources)
    return arrays


def _loaded(info: DatasetInfo, arrays: Mapping[str, np.ndarray], source: str) -> LoadedDataset:
    return LoadedDataset(name=info.name, x_train=arrays["train_images"],
                         y_train=arrays["train_labels"], x_test=arrays["test_images"],
                         y_test=arrays["test_labels"], class_names=tuple(info.class_names),
                         source=source)


def load_dataset(name: str | DatasetInfo, data_dir: str | os.PathLike[str] | None = None, *,
                 env: Mapping[str, str] | None = None, download: bool = True,
                 mirrors: Sequence[str] | None = None, progress: bool = True,
                 timeout: float = 30.0) -> LoadedDataset:
    """Find, verify and load a dataset; the first place holding any of its files wins.

    Order: `data_dir`, `$TFCNN_DATA_DIR`, Keras's cache, system copies, tfcnn's cache,
    then a download into tfcnn's cache (mirrors: `mirrors`, else `$TFCNN_MIRRORS`, else
    the registry's). `env` stands in for os.environ throughout.
    """
    info = _resolve(name)
    env = os.environ if env is None else env
    cache = tfcnn_cache_dir(env) / info.name
    places = _places(info, data_dir, env)
    for place in places:
        if not place.found or place.path is None:
            continue
        try:
            arrays = _load_npz(place.path, info) if place.npz else _load_folder(place.path, info)
        except DatasetError as e:
            if place.path != cache:
                raise
            raise DatasetError(f"{e}; delete {cache} to download it again") from e
        return _loaded(info, arrays, str(place.path))
    if download:
        try:
            urls = mirror_list(info, env, mirrors)
            arrays = download_dataset(info, cache, urls, timeout, progress)
            return _loaded(info, arrays, f"download -> {cache}")
        except DatasetError as e:
            outcome = f"download failed ({e})"
    else:
        outcome = "download disabled"
    files = ", ".join(f.filename for f in info.files)
    raise DatasetError(f"dataset {info.name!r} not found; looked in: "
                       f"{', '.join(p.label for p in places)}; {outcome}. Fix: pass --data-dir "
                       f"DIR with the four IDX files ({files}), or set TFCNN_DATA_DIR, or "
                       "connect to the internet.")


def describe_source(name: str | DatasetInfo, data_dir: str | os.PathLike[str] | None = None,
                    *, env: Mapping[str, str] | None = None,
                    mirrors: Sequence[str] | None = None) -> str:
    """Where `load_dataset` would load from; checks only that files exist (no download)."""
    info = _resolve(name)
    env = os.environ if env is None else env
    for place in _places(info, data_dir, env):
        if place.found:
            return str(place.path)
    cache = tfcnn_cache_dir(env) / info.name
    urls = mirror_list(info, env, mirrors)
    if not urls:
        return f"not found locally; no mirrors configured to download into {cache}"
    return f"not found locally; would download from {' or '.join(urls)} into {cache}"
