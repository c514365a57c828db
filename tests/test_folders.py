"""Image-folder datasets: layout, conversion, resizing, the stratified split, skips and errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import make_shapes
from tfcnn.core.errors import ConfigError, DatasetError
from tfcnn.data.folders import load_image_folder, parse_folder_spec, parse_image_size
from tfcnn.images.prepare import decode_for_model, to_pixels


def image_to_array(im: Image.Image, *, grayscale: bool = True) -> np.ndarray:
    """28x28 pixels as the folder loader stores them: (H, W) grey or (H, W, 3) colour."""
    pixels = to_pixels(im, 28, 28, 1 if grayscale else 3)
    return pixels[..., 0] if grayscale else pixels


def make_ids(root: Path, counts: dict[str, int]) -> Path:
    """Grayscale 28x28 PNGs whose pixel [0, 0] is a unique id and [1, 1] the class index."""
    next_id = 0
    for label, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True)
        for i in range(count):
            a = np.zeros((28, 28), np.uint8)
            a[0, 0], a[1, 1] = next_id, label
            Image.fromarray(a).save(root / name / f"{i:03d}.png")
            next_id += 1
    return root


def ids(x: np.ndarray) -> set[int]:
    return set(x[:, 0, 0].tolist())


def test_shapes_grayscale(tmp_path):
    root = make_shapes(tmp_path / "shapes")
    result = load_image_folder(root)
    ds = result.dataset
    assert result.skipped == []
    assert ds.class_names == ("circle", "square", "triangle")
    assert ds.name == f"folder:{root}" and ds.source == str(root.resolve())
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.uint8
    assert ds.x_train.shape[1:] == (28, 28) and ds.x_test.shape[1:] == (28, 28)
    # 6 per class at 0.1: round(0.6) = 1 held out per class.
    assert (len(ds.y_train), len(ds.y_test)) == (15, 3)
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]


def test_shapes_rgb_odd_size(tmp_path):
    root = make_shapes(tmp_path / "shapes")
    ds = load_image_folder(root, image_size=(19, 33), grayscale=False).dataset
    assert ds.x_train.shape == (15, 19, 33, 3) and ds.x_test.shape == (3, 19, 33, 3)
    assert ds.x_train.dtype == np.uint8
    assert ds.x_train.std() > 0  # colours survived


def test_resize_stretches_without_keeping_aspect(tmp_path):
    a = np.full((10, 40), 255, np.uint8)
    a[:, :20] = 0  # left half black, in a wide image
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(a).save(tmp_path / name / "x.png")
    ds = load_image_folder(tmp_path, image_size=(28, 28), test_split=0).dataset
    x = ds.x_train[0]
    assert x.shape == (28, 28)
    assert x[:, :13].max() == 0 and x[:, 15:].min() == 255  # stretched, not padded or cropped


def test_class_names_sorted_case_sensitive_and_labels_match(tmp_path):
    # Each class is a solid grey level, so the label can be read back from the pixels.
    levels = {"b": 200, "B": 20, "a": 120}
    for name, level in levels.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("L", (9 + i, 30), level).save(tmp_path / name / f"{i}.png")
    ds = load_image_folder(tmp_path, test_split=0.34).dataset
    assert ds.class_names == ("B", "a", "b")
    for x, y in [*zip(ds.x_train, ds.y_train, strict=True),
                 *zip(ds.x_test, ds.y_test, strict=True)]:
        assert int(x.mean()) == levels[ds.class_names[y]]


def test_transparency_composited_on_white(tmp_path):
    im = Image.new("RGBA", (28, 28), (0, 0, 0, 0))  # fully transparent black
    im.putpixel((3, 3), (0, 0, 0, 255))
    assert image_to_array(im)[0, 0] == 255 and image_to_array(im)[3, 3] == 0
    half = Image.new("RGBA", (28, 28), (0, 0, 0, 128))
    assert abs(int(image_to_array(half, grayscale=False)[0, 0, 0]) - 127) <= 1
    # A palette GIF with a transparent index, read back from disk.
    p = Image.new("P", (28, 28), 1)
    p.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    p.save(tmp_path / "t.gif", transparency=1)
    assert decode_for_model(tmp_path / "t.gif", 28, 28, 1).min() == 255


def test_sixteen_bit_scaled_and_exif_orientation(tmp_path):
    a = np.full((28, 28), 65535, np.uint16)
    a[:14] = 257 * 100
    Image.fromarray(a).save(tmp_path / "deep.png")
    x = decode_for_model(tmp_path / "deep.png", 28, 28, 1)[..., 0]
    assert x[0, 0] == 100 and x[-1, 0] == 255
    top_black = np.full((28, 28), 255, np.uint8)
    top_black[:14] = 0
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    Image.fromarray(top_black).save(tmp_path / "rot.png", exif=exif)
    x = decode_for_model(tmp_path / "rot.png", 28, 28, 1)[..., 0]
    assert x[0, 0] == 255 and x[-1, 0] == 0
    # The decoder takes bytes too (uploads), with the same conversion.
    data = io.BytesIO((tmp_path / "rot.png").read_bytes())
    assert np.array_equal(decode_for_model(data, 28, 28, 1)[..., 0], x)


def test_split_stratified_counts(tmp_path):
    counts = {"c1": 1, "c2": 2, "c5": 5, "c25": 25, "c40": 40}
    root = make_ids(tmp_path / "d", counts)
    ds = load_image_folder(root, test_split=0.1).dataset
    held = {name: 0 for name in ds.class_names}
    for y in ds.y_test:
        held[ds.class_names[y]] += 1
    # 1 image: stays in training; 2 -> at least 1; 0.5 and 2.5 round up; 4.0 -> 4.
    assert held == {"c1": 0, "c2": 1, "c5": 1, "c25": 3, "c40": 4}
    assert len(ds.y_train) + len(ds.y_test) == 73
    # Labels match the class index stored in each image.
    assert (ds.x_train[:, 1, 1] == ds.y_train).all() and (ds.x_test[:, 1, 1] == ds.y_test).all()
    # A large fraction never empties a class's training part.
    high = load_image_folder(root, test_split=0.99).dataset
    assert sorted(set(high.y_train.tolist())) == [0, 1, 2, 3, 4]


def test_split_seeded_disjoint(tmp_path):
    root = make_ids(tmp_path / "d", {"a": 30, "b": 20, "c": 10})
    one = load_image_folder(root, test_split=0.3, seed=1).dataset
    again = load_image_folder(root, test_split=0.3, seed=1).dataset
    other = load_image_folder(root, test_split=0.3, seed=2).dataset
    assert np.array_equal(one.x_train, again.x_train) and np.array_equal(one.y_test, again.y_test)
    assert np.array_equal(one.x_test, again.x_test)
    assert ids(one.x_test) != ids(other.x_test)
    for ds in (one, other):
        assert ids(ds.x_train).isdisjoint(ids(ds.x_test))
        assert ids(ds.x_train) | ids(ds.x_test) == set(range(60))
        assert len(ds.y_test) == 9 + 6 + 3
    # Training order is shuffled, so a prefix (--limit-train) spans the classes.
    assert len(set(one.y_train[:10].tolist())) > 1


def test_no_split(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=2)
    gray = load_image_folder(root, test_split=0).dataset
    assert gray.x_test.shape == (0, 28, 28) and gray.y_test.shape == (0,)
    assert len(gray.y_train) == 6
    rgb = load_image_folder(root, test_split=0.0, grayscale=False, image_size=(8, 9)).dataset
    assert rgb.x_test.shape == (0, 8, 9, 3)


def test_unreadable_files_skipped_and_reported(tmp_path):
    root = make_shapes(tmp_path / "shapes", per_class=2)
    (root / "circle" / "notes.png").write_text("not an image\n")
    (root / "square" / "empty.png").write_bytes(b"")
    good = root / "triangle" / "00.png"
    (root / "triangle" / "cut.png").write_bytes(good.read_bytes()[:60])
    result = load_image_folder(root, test_split=0)
    reasons = dict(result.skipped)
    assert len(result.skipped) == 3
    assert reasons[str(root / "circle" / "notes.png")] == "not a PNG, JPEG, BMP, GIF or WebP image"
    assert reasons[str(root / "square" / "empty.png")] == "empty file (0 bytes)"
    assert "truncated" in reasons[str(root / "triangle" / "cut.png")]
    assert len(result.dataset.y_train) == 6


# 100x100 = 10000 px: past 2x the limit Pillow raises, past 1x it warns; 28x28 stays under.
@pytest.mark.parametrize("limit", [1000, 6000])
def test_decompression_bomb_skipped(tmp_path, monkeypatch, limit):
    root = make_ids(tmp_path / "d", {"a": 2, "b": 2})
    Image.new("L", (100, 100)).save(root / "a" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    result = load_image_folder(root)
    assert [(Path(p).name, r.split(" (")[0]) for p, r in result.skipped] == [
        ("big.png", "image too large")]
    assert len(result.dataset.y_train) + len(result.dataset.y_test) == 4


def test_hidden_nested_and_root_files(tmp_path):
    root = make_ids(tmp_path / "d", {"a": 2, "b": 2})
    (root / ".hidden").mkdir()  # not a class
    Image.new("L", (5, 5)).save(root / ".hidden" / "x.png")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # not reported
    (root / "a" / ".git").mkdir()
    (root / "a" / ".git" / "junk").write_text("x")
    (root / "a" / "more").mkdir()  # nested images still belong to class "a"
    Image.new("L", (5, 5), 7).save(root / "a" / "more" / "n.png")
    (root / "README.txt").write_text("files in the root are ignored")
    result = load_image_folder(root, test_split=0)
    assert result.skipped == []
    assert result.dataset.class_names == ("a", "b")
    assert sorted(result.dataset.y_train.tolist()) == [0, 0, 0, 1, 1]


def test_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=f"^{missing}: no such folder"):
        load_image_folder(missing)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="file.png: not a folder"):
        load_image_folder(tmp_path / "file.png")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (5, 5)).save(flat / "x.png")
    with pytest.raises(DatasetError, match=f"^{flat}: no class sub-folders"):
        load_image_folder(flat)
    one = make_ids(tmp_path / "one", {"only": 3})
    with pytest.raises(DatasetError, match=r"only one class sub-folder \(only\)"):
        load_image_folder(one)
    empty = make_ids(tmp_path / "empty", {"a": 2})
    (empty / "b").mkdir()
    (empty / "b" / ".keep").write_text("")
    with pytest.raises(DatasetError, match=f"^{empty / 'b'}: class folder has no files"):
        load_image_folder(empty)
    bad = make_ids(tmp_path / "bad", {"a": 2, "b": 1, "c": 1})
    (bad / "b" / "000.png").write_text("x")
    (bad / "c" / "000.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="class folders b, c have no readable images") as e:
        load_image_folder(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.1", float("nan")])
def test_bad_val_split(tmp_path, value):
    with pytest.raises(ConfigError, match="^--test-split"):
        load_image_folder(tmp_path, test_split=value)


@pytest.mark.parametrize("size", [(0, 28), (28,), [28, 28], (28.0, 28), (28, 5000)])
def test_bad_image_size_argument(tmp_path, size):
    with pytest.raises(ConfigError, match="^--image-size"):
        load_image_folder(tmp_path, image_size=size)


def test_parse_image_size():
    assert parse_image_size("28") == (28, 28)
    assert parse_image_size("32x48") == (32, 48)
    assert parse_image_size(" 64X32 ") == (64, 32)
    for bad in ("", "x", "28x", "x28", "1x2x3", "abc", "28.5", "0", "-3", "28x0", "9000"):
        with pytest.raises(ConfigError, match="^--image-size") as e:
            parse_image_size(bad)
        assert "\n" not in str(e.value)


def test_parse_folder_spec():
    assert parse_folder_spec("folder:/data/imgs") == Path("/data/imgs")
    assert parse_folder_spec("folder:rel/dir") == Path("rel/dir")
    assert parse_folder_spec("folder:~/x") == Path.home() / "x"
    assert parse_folder_spec("mnist") is None
    assert parse_folder_spec("fashion_mnist") is None
    with pytest.raises(ConfigError, match="^--dataset"):
        parse_folder_spec("folder:")

