"""Atomic writes: a file appears whole or not at all."""

import json
import os

import pytest

from tfcnn.core.fsutil import atomic_path, atomic_write_json, atomic_write_text


def test_write_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_writer_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "model.keras"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".keras") as tmp:
        assert tmp.name.endswith(".keras") and tmp.parent == tmp_path
        tmp.write_text("half-writ")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_new_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
