"""Listing an image folder (tfcnn.data.folders.scan_image_folder) without trusting it (issue
20): FIFOs and devices are never opened, folder links are not followed, so nothing hangs and
no image lands in another class."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from support import finishes_in_time
from test_folders import make_ids
from tfcnn.core.errors import DatasetError
from tfcnn.data.folders import load_image_folder, scan_image_folder


def test_fifo_and_device_files_are_skipped_and_reported(tmp_path):
    root = make_ids(tmp_path / "d", {"a": 2, "b": 2})
    os.mkfifo(root / "a" / "pipe.png")
    (root / "b" / "zero.png").symlink_to("/dev/zero")
    result = finishes_in_time(lambda: load_image_folder(root, test_split=0))
    assert dict(result.skipped) == {str(root / "a" / "pipe.png"): "not a regular file (a FIFO)",
                                    str(root / "b" / "zero.png"): "not a regular file (a device)"}
    assert sorted(result.dataset.y_train.tolist()) == [0, 0, 1, 1]


@pytest.mark.parametrize("target", ["..", "../b", "."])
def test_folder_symlink_loops_pull_in_nothing(tmp_path, target):
    root = make_ids(tmp_path / "d", {"a": 2, "b": 3})
    (root / "a" / "loop").symlink_to(target, target_is_directory=True)
    result = load_image_folder(root, test_split=0)
    assert result.skipped == [(str(root / "a" / "loop"),
                               "symbolic link to a folder: not followed")]
    ds = result.dataset
    assert sorted(ds.y_train.tolist()) == [0, 0, 1, 1, 1]
    assert (ds.x_train[:, 1, 1] == ds.y_train).all()  # each image in its own class


def test_class_folders_may_be_links_and_nested_real_folders_still_count(tmp_path):
    store = make_ids(tmp_path / "store", {"a": 2, "b": 2})
    root = tmp_path / "d"
    root.mkdir()
    for name in ("a", "b"):
        (root / name).symlink_to(store / name, target_is_directory=True)
    (store / "a" / "more").mkdir()
    Image.new("L", (5, 5)).save(store / "a" / "more" / "n.png")
    result = load_image_folder(root, test_split=0)
    assert result.skipped == []
    assert sorted(result.dataset.y_train.tolist()) == [0, 0, 0, 1, 1]


def test_scan_lists_files_and_labels_without_decoding(tmp_path):
    root = make_ids(tmp_path / "d", {"cat": 2, "dog": 1})
    (root / "dog" / "notes.txt").write_text("not an image: decoding would skip it")
    os.mkfifo(root / "cat" / "pipe")
    files, labels, class_names, skipped = scan_image_folder(root)
    assert class_names == ("cat", "dog")
    assert [Path(f).relative_to(root).as_posix() for f in files] == [
        "cat/000.png", "cat/001.png", "dog/000.png", "dog/notes.txt"]
    assert labels == [0, 0, 1, 1]
    assert skipped == [(str(root / "cat" / "pipe"), "not a regular file (a FIFO)")]
    with pytest.raises(DatasetError, match="no such folder"):
        scan_image_folder(tmp_path / "nope")
