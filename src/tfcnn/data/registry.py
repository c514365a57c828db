"""The known datasets: files and digests, class names, mirrors, where copies live, valid shapes.

IDX datasets (MNIST, Fashion-MNIST): digests are SHA-256 of the *decompressed* IDX
content, so they hold for any gzip repacking of the files (Debian's, our shared copies)
and for Keras's mnist.npz arrays re-encoded as IDX (see `idx.sha256_of_idx`).
CIFAR-10 (format "cifar"): one archive with its own SHA-256, holding batch files that
each carry theirs, so an extracted copy is verified as well as the archive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from tfcnn.core.errors import DatasetError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
# Keys of the arrays inside a Keras-style .npz (mnist.npz).
NPZ_KEYS = MappingProxyType({
    "train_images": "x_train",
    "train_labels": "y_train",
    "test_images": "x_test",
    "test_labels": "y_test",
})
# (images role, labels role) per split.
SPLITS = MappingProxyType({
    "train": ("train_images", "train_labels"),
    "test": ("test_images", "test_labels"),
})
OFFICIAL_FILENAMES = MappingProxyType({
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
})


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: its role, official file name, SHA-256 and size of its content.

    For a gzipped IDX file both describe the decompressed content; `size` (bytes, None
    when unknown) bounds what a reader decompresses and what a download may send.
    """

    role: str
    filename: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """Everything tfcnn knows about one dataset.

    `keras_cache` is a name inside Keras's datasets folder: either an `.npz` file
    holding x_train/y_train/x_test/y_test, or a folder holding the four IDX files;
    None when Keras keeps no copy. `system_dirs` are folders holding the four files
    (distribution packages); `dir_names` are the sub-folder names accepted inside a
    data dir. `format` is "idx" (the four IDX files in ROLES) or "cifar" (`archive`, a
    .tar.gz downloaded from the mirrors, holding `files`, CIFAR binary batches whose
    roles are "train" or "test", inside its folder `archive_dir`).
    """

    name: str
    class_names: tuple[str, ...]
    files: tuple[DatasetFile, ...]
    mirrors: tuple[str, ...] = ()
    keras_cache: str | None = None
    system_dirs: tuple[str, ...] = ()
    dir_names: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = (28, 28)
    format: str = "idx"
    archive: DatasetFile | None = None
    archive_dir: str = ""
    # The host-side step a model trained on it gives user images (tfcnn.images.prepare
    # PREPARE_STEPS): "mnist" for handwritten digits, None for everything else.
    prepare: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def file(self, role: str) -> DatasetFile:
        """The file with `role` (one of ROLES)."""
        for f in self.files:
            if f.role == role:
                return f
        raise DatasetError(f"dataset {self.name!r}: no file with role {role!r} "
                           f"(expected one of {', '.join(ROLES)})")


# Decompressed sizes of the official IDX files (header + items), the same for both datasets.
_IDX_SIZES = MappingProxyType({
    "train_images": 16 + 60000 * 28 * 28,
    "train_labels": 8 + 60000,
    "test_images": 16 + 10000 * 28 * 28,
    "test_labels": 8 + 10000,
})


def _files(digests: dict[str, str]) -> tuple[DatasetFile, ...]:
    return tuple(DatasetFile(role, OFFICIAL_FILENAMES[role], digests[role], _IDX_SIZES[role])
                 for role in ROLES)


_MNIST = DatasetInfo(
    name="mnist",
    class_names=tuple(str(d) for d in range(10)),
    files=_files({
        "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }),
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    keras_cache="mnist.npz",
    system_dirs=("/usr/share/datasets/mnist",),
    dir_names=("mnist",),
    prepare="mnist",
)

_FASHION_MNIST = DatasetInfo(
    name="fashion_mnist",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    files=_files({
        "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }),
    mirrors=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    keras_cache="fashion-mnist",
    # Debian's dataset-fashion-mnist package.
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    dir_names=("fashion_mnist", "fashion-mnist"),
)

# CIFAR-10's binary version: 10,000 records of 1 label byte + 3,072 pixel bytes per batch.
# Archive size and SHA-256: TensorFlow Datasets' url_checksums/cifar10.txt; the batch
# files' SHA-256: ankane/torchvision-ruby lib/torchvision/datasets/cifar10.rb.
CIFAR_BATCH_BYTES = 10000 * (1 + 32 * 32 * 3)
_CIFAR10 = DatasetInfo(
    name="cifar10",
    class_names=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
    files=tuple(DatasetFile(role, name, digest, CIFAR_BATCH_BYTES) for role, name, digest in (
        ("train", "data_batch_1.bin",
         "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5"),
        ("train", "data_batch_2.bin",
         "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed"),
        ("train", "data_batch_3.bin",
         "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67"),
        ("train", "data_batch_4.bin",
         "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48"),
        ("train", "data_batch_5.bin",
         "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add"),
        ("test", "test_batch.bin",
         "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b"),
    )),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    # A folder of the extracted batches (or the archive itself) in Keras's datasets folder.
    keras_cache="cifar-10-batches-bin",
    dir_names=("cifar10", "cifar-10", "cifar-10-batches-bin"),
    image_shape=(32, 32, 3),
    format="cifar",
    archive=DatasetFile("archive", "cifar-10-binary.tar.gz",
                        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                        170052171),
    archive_dir="cifar-10-batches-bin",
)

_REGISTRY = MappingProxyType({info.name: info for info in (_MNIST, _FASHION_MNIST, _CIFAR10)})
_ALIASES = MappingProxyType({"fashion-mnist": "fashion_mnist", "cifar-10": "cifar10"})


def dataset_names() -> list[str]:
    """Canonical names of the known datasets, in registry order."""
    return list(_REGISTRY)


def prepare_step(dataset: str) -> str | None:
    """The host-side preparation step for models trained on `dataset` (a registered name;
    None for image folders, in-memory data and unknown names)."""
    key = dataset.strip().lower()
    info = _REGISTRY.get(_ALIASES.get(key, key))
    return None if info is None else info.prepare


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name` (canonical name or alias, case-insensitive)."""
    key = name.strip().lower()
    info = _REGISTRY.get(_ALIASES.get(key, key))
    if info is None:
        known = ", ".join(dataset_names())
        aliases = ", ".join(f"{a} for {c}" for a, c in _ALIASES.items())
        raise DatasetError(f"dataset {name!r} is unknown; expected one of: {known} "
                           f"(aliases: {aliases})")
    return info


def identify_digest(sha256: str) -> tuple[str, str] | None:
    """(dataset name, role) of the registered file whose content has `sha256`, if any.

    Lets an error say "this is fashion_mnist's file" when the folders got mixed up.
    """
    for info in _REGISTRY.values():
        for f in info.files:
            if f.sha256 == sha256:
                return info.name, f.role
    return None


def check_array(info: DatasetInfo, role: str, arr: np.ndarray, source: str) -> None:
    """Raise DatasetError naming `source` unless `arr` has the dtype and shape of `role`."""
    if role.endswith("_images"):
        ok = tuple(arr.shape[1:]) == tuple(info.image_shape)
        expected = f"uint8 images of shape (N, {', '.join(map(str, info.image_shape))})"
    else:
        ok, expected = arr.ndim == 1, "uint8 labels of shape (N,)"
    if arr.dtype != np.uint8 or not ok:
        raise DatasetError(f"{source}: holds {arr.dtype} of shape {arr.shape}; expected {expected}")


def check_splits(info: DatasetInfo, arrays: Mapping[str, np.ndarray],
                 sources: Mapping[str, str]) -> None:
    """Raise DatasetError unless each split has as many labels as images, all < num_classes.

    `arrays` and `sources` are keyed by role; `sources` names each array in messages.
    """
    n = info.num_classes
    for split, (xr, yr) in SPLITS.items():
        x, y = arrays[xr], arrays[yr]
        if len(x) != len(y):
            raise DatasetError(f"{sources[xr]} has {len(x)} {split} images but {sources[yr]} "
                               f"has {len(y)} labels; expected equal counts")
        bad = np.flatnonzero(y >= n)
        if bad.size:
            i = int(bad[0])
            raise DatasetError(f"{sources[yr]}: label {int(y[i])} at index {i} is out of range; "
                               f"expected 0..{n - 1} ({n} classes)")
