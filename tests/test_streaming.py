"""Image folders streamed from disk (`--cache none|disk`): the same pixels, split and batches
as in memory, header checks, decode failures reported, the disk cache, the automatic choice."""

from __future__ import annotations

import os

import numpy as np
import pytest

from support import load_weights, make_shapes, same_weights
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ConfigError
from tfcnn.data import folders, pipeline
from tfcnn.data.files import ImageFiles
from tfcnn.data.folders import load_image_folder
from tfcnn.training.loop import Hooks
from tfcnn.training.run import train_run


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("stream") / "shapes", per_class=10)


def both(root, **options):
    options = {"image_size": (20, 24), "test_split": 0.2, "seed": 5, **options}
    return (load_image_folder(root, **options).dataset,
            load_image_folder(root, stream=True, **options).dataset)


@pytest.mark.parametrize("grayscale", [True, False])
def test_a_streamed_folder_has_the_in_memory_split_and_pixels(shapes, grayscale):
    held, streamed = both(shapes, grayscale=grayscale)
    assert isinstance(streamed.x_train, ImageFiles)
    assert streamed.x_train.shape == held.x_train.shape
    assert streamed.x_train.ndim == held.x_train.ndim
    np.testing.assert_array_equal(streamed.y_train, held.y_train)
    np.testing.assert_array_equal(streamed.y_test, held.y_test)
    np.testing.assert_array_equal(np.asarray(streamed.x_train), held.x_train)
    np.testing.assert_array_equal(streamed.x_test[1], held.x_test[1])
    subset = streamed.x_train[np.array([3, 0])]
    assert isinstance(subset, ImageFiles) and subset.shape[0] == 2
    np.testing.assert_array_equal(np.asarray(subset), held.x_train[[3, 0]])


def test_streamed_batches_equal_in_memory_ones_and_resume_mid_epoch(shapes):
    held, streamed = both(shapes, grayscale=False)
    arrays = pipeline.train_examples(held.x_train, held.y_train)
    files = pipeline.train_examples(streamed.x_train, streamed.y_train)
    assert files.files is not None  # shuffled as paths, decoded after
    for skip in (0, 2):
        a = list(pipeline.train_batches(arrays, 4, 7, seed=9, epoch=3, skip_batches=skip))
        b = list(pipeline.train_batches(files, 4, 7, seed=9, epoch=3, skip_batches=skip))
        assert len(a) == len(b) == 6 - skip
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_header_checks_skip_bad_files_and_a_damaged_one_is_fed_black_and_recorded(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=3)
    (root / "circle" / "notes.png").write_text("not an image\n")
    (root / "square" / "empty.png").write_bytes(b"")
    good = (root / "triangle" / "00.png").read_bytes()
    (root / "triangle" / "cut.png").write_bytes(good[:len(good) - 40])  # header intact
    streamed = load_image_folder(root, test_split=0, stream=True)
    reasons = dict(streamed.skipped)
    assert reasons == {str(root / "circle" / "notes.png"):
                       "not a PNG, JPEG, BMP, GIF or WebP image",
                       str(root / "square" / "empty.png"): "empty file (0 bytes)"}
    images = streamed.dataset.x_train
    cut = int(np.flatnonzero(images.paths == str(root / "triangle" / "cut.png"))[0])
    assert not images[cut].any()  # black
    assert [path for path, _ in images.failures] == [str(root / "triangle" / "cut.png")]
    assert "truncated" in images.failures[0][1]
    # In memory, the same file is found at once and skipped.
    held = load_image_folder(root, test_split=0)
    assert str(root / "triangle" / "cut.png") in dict(held.skipped)


def test_a_large_folder_streams_by_default(shapes, monkeypatch):
    small = load_image_folder(shapes, test_split=0, stream=None)
    assert isinstance(small.dataset.x_train, np.ndarray)
    monkeypatch.setattr(folders, "MEMORY_BYTES", 1000)
    assert isinstance(load_image_folder(shapes, test_split=0, stream=None).dataset.x_train,
                      ImageFiles)


def config(folder, cache, **settings) -> TrainConfig:
    return TrainConfig(**{"dataset": f"folder:{folder}", "grayscale": False, "image_size": "16",
                          "model": "8C3-P2-D3", "epochs": 2, "batch_size": 8, "seed": 2,
                          "test_split": 0.2, "cache": cache, "hflip": True, **settings})


@pytest.mark.parametrize("cache", ["none", "disk"])
def test_training_from_disk_gives_the_in_memory_run(shapes, tmp_path, cache):
    held = train_run(config(shapes, "memory"), tmp_path / "memory", Hooks())
    run = train_run(config(shapes, cache), tmp_path / cache, Hooks())
    assert [r["test_accuracy"] for r in run.epochs] == [r["test_accuracy"] for r in held.epochs]
    assert same_weights(load_weights(run.run_dir / "model.keras"),
                        load_weights(held.run_dir / "model.keras"))
    cached = sorted(p.name for p in (tmp_path / cache / "cache").glob("*.index"))
    assert [name.split("-")[0] for name in cached] == (["test", "train"] if cache == "disk"
                                                       else [])


def test_a_disk_cache_left_unfinished_is_rebuilt_on_resume(shapes, tmp_path):
    straight = train_run(config(shapes, "disk"), tmp_path / "straight", Hooks())
    train_run(config(shapes, "disk", epochs=1), tmp_path / "run", Hooks())
    cache = tmp_path / "run" / "cache"
    index = next(cache.glob("train-*.index"))
    prefix = str(index)[:-len(".index")]
    index.unlink()  # as if stopped during the first pass: a lock file and no index
    (cache / f"{index.name[:-len('.index')]}.lockfile").write_text("")
    resumed = train_run(config(shapes, "disk", epochs=2), tmp_path / "run", Hooks(),
                        resume=True)
    assert [r["epoch"] for r in resumed.epochs] == [1, 2]
    assert same_weights(load_weights(resumed.run_dir / "model.keras"),
                        load_weights(straight.run_dir / "model.keras"))
    assert (cache / f"{prefix.rsplit('/', 1)[-1]}.index").exists()


def test_decode_failures_during_training_are_told(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=4)
    good = (root / "circle" / "00.png").read_bytes()
    (root / "circle" / "cut.png").write_bytes(good[:len(good) - 40])
    notes: list[str] = []
    train_run(config(root, "none", epochs=2, test_split=0), tmp_path / "run",
              Hooks(note=notes.append))
    told = [n for n in notes if "could not be decoded" in n]
    assert len(told) == 1 and str(root / "circle" / "cut.png") in told[0]  # once, not per epoch


def test_cache_setting_is_checked():
    with pytest.raises(ConfigError, match="cache: expected one of memory, disk, stream, none"):
        TrainConfig(cache="ram")
    from tfcnn.data.source import check_dataset_setting

    with pytest.raises(ConfigError, match="--cache: only for image-folder datasets"):
        check_dataset_setting(TrainConfig(dataset="mnist", cache="disk"))


def test_evaluating_a_streamed_folder_gives_the_in_memory_report(shapes, tmp_path, monkeypatch):
    import tfcnn

    run = train_run(config(shapes, "memory", epochs=1), tmp_path / "run", Hooks())
    other = tmp_path / "other"  # not the run's dataset: evaluated whole
    other.symlink_to(shapes, target_is_directory=True)
    classifier = tfcnn.load(run.run_dir)
    held = classifier.evaluate(dataset=f"folder:{other}", tta=True)
    monkeypatch.setattr(folders, "MEMORY_BYTES", 1000)
    streamed = classifier.evaluate(dataset=f"folder:{other}", tta=True,
                                   report_dir=tmp_path / "report")
    assert streamed.to_dict() == held.to_dict()
    assert (tmp_path / "report" / "worst_images.png").stat().st_size > 0


def test_the_cli_says_where_the_images_are_kept(shapes, tmp_path, capsys):
    from tfcnn.cli import main

    args = ["train", "--dataset", f"folder:{shapes}", "--rgb", "--image-size", "16",
            "--model", "8C3-P2-D3", "--epochs", "1", "--batch-size", "8", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "a"), "--cache", "none"]) == 0
    assert "test images; streamed from disk)" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "test images; decoded in memory)" in capsys.readouterr().out


# --- `--cache disk` with awkward files (issue 25, item 3) ---------------------------------

def tiny_folder(root, name=None):
    """3 classes × 8 random 8×8 PNGs; `name` (str, maybe not UTF-8) adds one more to 'a'."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for kind in "abc":
        (root / kind).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / kind / f"{i}.png")
    if name is not None:
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "a" / name)
    return root


def tiny(folder, cache, **settings) -> TrainConfig:
    return TrainConfig(**{"dataset": f"folder:{folder}", "grayscale": False, "image_size": "8",
                          "model": "4C3-D3", "epochs": 1, "batch_size": 8, "seed": 1,
                          "test_split": 0.2, "cache": cache, **settings})


NOT_UTF8 = os.fsdecode(b"\xff\xfe-photo.png")  # the name's bytes as the file system has them


def test_the_disk_cache_names_folders_whose_file_names_are_not_utf8_or_gone(tmp_path):
    root = tiny_folder(tmp_path / "data", NOT_UTF8)
    files = load_image_folder(root, test_split=0, stream=True).dataset.x_train
    assert str(root / "a" / NOT_UTF8) in list(files.paths)
    prefix = pipeline.cache_file(tmp_path / "cache", "train", files)
    (root / "b" / "3.png").unlink()  # gone after its header check: the digest says so
    assert pipeline.cache_file(tmp_path / "cache", "train", files) != prefix


def test_disk_cache_training_takes_a_file_name_that_is_not_utf8(tmp_path):
    root = tiny_folder(tmp_path / "data", NOT_UTF8)
    notes: list[str] = []
    run = train_run(tiny(root, "disk"), tmp_path / "run", Hooks(note=notes.append))
    assert [r["epoch"] for r in run.epochs] == [1]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "run" / "cache").glob("*.index")
                  ) == ["test", "train"]
    assert not [n for n in notes if "could not be decoded" in n]  # read as any other file


def test_a_file_gone_after_the_header_check_is_fed_black_and_told_once_with_disk_cache(
        tmp_path):
    root = tiny_folder(tmp_path / "data")
    config = tiny(root, "disk", epochs=2, test_split=0)
    dataset = load_image_folder(root, image_size=(8, 8), grayscale=False, test_split=0,
                                stream=True).dataset
    gone = root / "b" / "3.png"
    gone.unlink()  # between the scan and the training
    notes: list[str] = []
    run = train_run(config, tmp_path / "run", Hooks(note=notes.append), dataset=dataset)
    assert [r["epoch"] for r in run.epochs] == [1, 2]
    told = [n for n in notes if "could not be decoded" in n]
    assert len(told) == 1 and f"{gone}: cannot read" in told[0]


def test_a_full_disk_while_caching_suggests_training_without_the_cache(tmp_path,
                                                                       monkeypatch):
    import tensorflow as tf

    from tfcnn.core.errors import RunDirError

    def full(self, filename="", name=None):  # what TensorFlow raised on a full tmpfs
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{filename}_0.data-00000-of-00001.tempstate1; No space left on device")

    monkeypatch.setattr(tf.data.Dataset, "cache", full)
    root = tiny_folder(tmp_path / "data")
    out = tmp_path / "run"
    with pytest.raises(RunDirError) as caught:
        train_run(tiny(root, "disk"), out, Hooks())
    message = str(caught.value)
    assert message.startswith(f"{out / 'cache'}/train-") and "\n" not in message
    assert "no space left on device while caching the decoded images" in message
    assert message.endswith(f"tfcnn train --resume {out} --cache stream")
    monkeypatch.undo()
    resumed = train_run(tiny(root, "none"), out, Hooks(), resume=True)  # what it suggests
    assert [r["epoch"] for r in resumed.epochs] == [1]
