"""The dataset registry (tfcnn.data.registry)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfcnn.core.errors import DatasetError
from tfcnn.data.idx import read_idx_with_sha256
from tfcnn.data.registry import (
    ROLES,
    check_array,
    check_splits,
    dataset_names,
    get_dataset_info,
    identify_digest,
)


def test_names_and_aliases():
    assert dataset_names() == ["mnist", "fashion_mnist", "cifar10"]
    assert get_dataset_info("fashion-mnist") is get_dataset_info("fashion_mnist")
    assert get_dataset_info("CIFAR-10") is get_dataset_info("cifar10")
    assert get_dataset_info(" MNIST ").name == "mnist"


def test_unknown_name_lists_known_ones():
    with pytest.raises(DatasetError, match=r"'cifar' is unknown; expected one of: mnist, "
                       r"fashion_mnist, cifar10 \(aliases: fashion-mnist for fashion_mnist, "
                       r"cifar-10 for cifar10\)"):
        get_dataset_info("cifar")


def test_mnist_entry():
    info = get_dataset_info("mnist")
    assert info.class_names == tuple("0123456789")
    assert info.num_classes == 10 and info.image_shape == (28, 28)
    assert [f.role for f in info.files] == list(ROLES)
    assert info.file("test_images").filename == "t10k-images-idx3-ubyte.gz"
    assert info.file("train_labels").filename == "train-labels-idx1-ubyte.gz"
    assert info.keras_cache == "mnist.npz"
    assert info.system_dirs == ("/usr/share/datasets/mnist",)
    assert all(m.startswith("https://") and m.endswith("/") for m in info.mirrors)


def test_fashion_mnist_entry():
    info = get_dataset_info("fashion_mnist")
    assert info.class_names[0] == "T-shirt/top" and info.class_names[-1] == "Ankle boot"
    assert len(info.class_names) == 10
    assert info.keras_cache == "fashion-mnist"
    assert info.system_dirs == ("/usr/share/datasets/fashion-mnist",)
    assert set(info.dir_names) == {"fashion_mnist", "fashion-mnist"}


def test_entries_are_frozen():
    info = get_dataset_info("mnist")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.files[0].sha256 = "0" * 64  # type: ignore[misc]


def test_digests_are_distinct_and_identifiable():
    digests = {(i.name, f.filename): (f.sha256, f.role)
               for i in map(get_dataset_info, dataset_names()) for f in i.files}
    assert len({d for d, _ in digests.values()}) == 8 + 6
    for (name, _), (digest, role) in digests.items():
        assert len(digest) == 64 and int(digest, 16) >= 0
        assert identify_digest(digest) == (name, role)
    assert identify_digest("0" * 64) is None


def test_cifar10_entry():
    info = get_dataset_info("cifar10")
    assert info.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                "horse", "ship", "truck")
    assert info.image_shape == (32, 32, 3) and info.format == "cifar"
    assert info.archive is not None and info.archive.filename == "cifar-10-binary.tar.gz"
    assert info.archive.size == 170052171 and len(info.archive.sha256) == 64
    assert [(f.role, f.filename) for f in info.files] == (
        [("train", f"data_batch_{i}.bin") for i in range(1, 6)] + [("test", "test_batch.bin")])
    # 10,000 records of 1 label byte + 32 x 32 x 3 pixel bytes per batch file
    assert {f.size for f in info.files} == {10000 * 3073}
    assert info.keras_cache == "cifar-10-batches-bin"
    assert all(m.startswith("https://") and m.endswith("/") for m in info.mirrors)


def test_idx_entries_know_their_decompressed_sizes():
    for name in ("mnist", "fashion_mnist"):
        sizes = {f.role: f.size for f in get_dataset_info(name).files}
        assert sizes == {"train_images": 47040016, "train_labels": 60008,
                         "test_images": 7840016, "test_labels": 10008}


def test_check_array_for_colour_images():
    info = get_dataset_info("cifar10")
    check_array(info, "train_images", np.zeros((2, 32, 32, 3), np.uint8), "x")
    with pytest.raises(DatasetError, match=r"expected uint8 images of shape \(N, 32, 32, 3\)"):
        check_array(info, "train_images", np.zeros((2, 32, 32), np.uint8), "x")


def test_file_with_unknown_role():
    with pytest.raises(DatasetError, match=r"no file with role 'val_images'"):
        get_dataset_info("mnist").file("val_images")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_digests_match_the_real_files(shared_datasets_dir, name):
    info = get_dataset_info(name)
    for f in info.files:
        arr, digest = read_idx_with_sha256(shared_datasets_dir / name / f.filename,
                                           max_bytes=f.size)
        assert digest == f.sha256, f.filename
        assert 8 + arr.size * arr.itemsize + 4 * (arr.ndim - 1) == f.size


def test_check_array_and_splits():
    info = get_dataset_info("mnist")
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([0, 9, 1], np.uint8)
    check_array(info, "train_images", images, "x")
    check_array(info, "train_labels", labels, "y")
    with pytest.raises(DatasetError, match=r"^x: holds uint8 of shape \(3, 28, 27\); expected "
                       r"uint8 images of shape \(N, 28, 28\)$"):
        check_array(info, "train_images", images[:, :, 1:], "x")
    with pytest.raises(DatasetError, match=r"^y: holds int64 of shape \(3,\)"):
        check_array(info, "test_labels", labels.astype(np.int64), "y")
    arrays = {"train_images": images, "train_labels": labels,
              "test_images": images[:1], "test_labels": labels[:1]}
    sources = {role: role for role in ROLES}
    check_splits(info, arrays, sources)
    with pytest.raises(DatasetError, match=r"^test_images has 1 test images but test_labels has "
                       r"2 labels; expected equal counts$"):
        check_splits(info, {**arrays, "test_labels": labels[:2]}, sources)
    with pytest.raises(DatasetError, match=r"^train_labels: label 10 at index 2 is out of "
                       r"range; expected 0\.\.9 \(10 classes\)$"):
        check_splits(info, {**arrays, "train_labels": np.array([0, 1, 10], np.uint8)}, sources)
