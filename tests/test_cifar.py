"""CIFAR-10 (tfcnn.data.cifar through tfcnn.data.locate): archive, extracted folder, download.

Fixtures are small archives in the official binary format (records of 1 label byte and
3,072 pixel bytes, channel by channel), with a registry entry carrying their own digests;
downloads come from a local HTTP server only.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from test_locate import server  # noqa: F401 (the local HTTP server fixture)
from tfcnn.core.errors import DatasetError
from tfcnn.data.locate import describe_source, load_dataset
from tfcnn.data.registry import DatasetFile, DatasetInfo, get_dataset_info

REAL = get_dataset_info("cifar10")
BATCHES = [f.filename for f in REAL.files]  # data_batch_1..5.bin, test_batch.bin


def records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The official record layout: label byte, then red, green and blue planes (CHW)."""
    chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), chw], axis=1).tobytes()


@dataclass
class Cifar:
    images: dict[str, np.ndarray]  # by batch file name
    labels: dict[str, np.ndarray]
    info: DatasetInfo
    archive: bytes
    env: dict[str, str]
    tmp: Path

    def batch(self, name: str) -> bytes:
        return records(self.images[name], self.labels[name])

    @property
    def x_train(self) -> np.ndarray:
        return np.concatenate([self.images[n] for n in BATCHES[:5]])

    @property
    def cache(self) -> Path:
        return self.tmp / "xdg" / "tfcnn" / "cifar10"

    def load(self, data_dir=None, **kwargs):
        kwargs.setdefault("mirrors", [])
        kwargs.setdefault("progress", False)
        return load_dataset(self.info, data_dir, env=self.env, **kwargs)


def make_archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


def build(tmp: Path, labels_of=None) -> Cifar:
    rng = np.random.default_rng(0)
    images, labels = {}, {}
    for i, name in enumerate(BATCHES):
        n = 3 + i  # batches of different sizes, so their order shows
        images[name] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, n, dtype=np.uint8) if labels_of is None else \
            labels_of(name, n)
    batches = {n: records(images[n], labels[n]) for n in BATCHES}
    meta = "\n".join(REAL.class_names).encode() + b"\n"
    archive = make_archive({"batches.meta.txt": meta, **batches, "readme.html": b"<html/>"})
    files = tuple(DatasetFile(f.role, f.filename, hashlib.sha256(batches[f.filename]).hexdigest(),
                              len(batches[f.filename])) for f in REAL.files)
    info = replace(REAL, files=files, mirrors=(), archive=DatasetFile(
        "archive", REAL.archive.filename, hashlib.sha256(archive).hexdigest(), len(archive)))
    (tmp / "xdg").mkdir(exist_ok=True)
    env = {"HOME": str(tmp / "home"), "XDG_CACHE_HOME": str(tmp / "xdg")}
    return Cifar(images, labels, info, archive, env, tmp)


@pytest.fixture
def cifar(tmp_path) -> Cifar:
    return build(tmp_path)


def assert_loaded(ds, c: Cifar) -> None:
    assert ds.name == "cifar10" and ds.class_names == REAL.class_names
    assert ds.x_train.shape == (25, 32, 32, 3) and ds.x_test.shape == (8, 32, 32, 3)
    assert ds.x_train.dtype == ds.y_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, c.x_train)
    np.testing.assert_array_equal(ds.y_train, np.concatenate([c.labels[n] for n in BATCHES[:5]]))
    np.testing.assert_array_equal(ds.x_test, c.images["test_batch.bin"])
    np.testing.assert_array_equal(ds.y_test, c.labels["test_batch.bin"])


def test_record_layout_is_label_then_red_green_blue_planes():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1] = (10, 20, 30)  # row 0, column 1
    data = records(image, np.array([7], np.uint8))
    assert len(data) == 3073 and data[0] == 7
    assert (data[1 + 1], data[1 + 1024 + 1], data[1 + 2048 + 1]) == (10, 20, 30)


def test_archive_in_a_data_dir(cifar):
    archive = cifar.tmp / "data" / "cifar10" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(cifar.archive)
    ds = cifar.load(cifar.tmp / "data")
    assert ds.source == str(archive)
    assert_loaded(ds, cifar)


def extract(c: Cifar, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in BATCHES:
        (folder / name).write_bytes(c.batch(name))
    return folder


def test_extracted_folder_in_a_data_dir_and_in_keras_cache(cifar):
    folder = extract(cifar, cifar.tmp / "data" / "cifar-10-batches-bin")
    ds = cifar.load(cifar.tmp / "data")
    assert ds.source == str(folder)
    assert_loaded(ds, cifar)

    keras = extract(cifar, cifar.tmp / "home" / ".keras" / "datasets" / "cifar-10-batches-bin")
    assert describe_source(cifar.info, env=cifar.env) == str(keras)
    ds = cifar.load()
    assert ds.source == str(keras)
    assert_loaded(ds, cifar)


def test_download_from_a_mirror_then_the_cache(cifar, server):  # noqa: F811
    server.routes["/c/cifar-10-binary.tar.gz"] = (cifar.archive, None)
    ds = cifar.load(mirrors=[server.base("c")])
    assert ds.source == f"download -> {cifar.cache}"
    assert_loaded(ds, cifar)
    assert [p.name for p in cifar.cache.iterdir()] == ["cifar-10-binary.tar.gz"]
    again = cifar.load(mirrors=[server.base("c")])
    assert again.source == str(cifar.cache / "cifar-10-binary.tar.gz")
    assert_loaded(again, cifar)
    assert server.requests == ["/c/cifar-10-binary.tar.gz"]


def test_a_bad_download_leaves_nothing(cifar, server):  # noqa: F811
    changed = bytearray(cifar.archive)
    changed[100] ^= 1
    server.routes["/c/cifar-10-binary.tar.gz"] = (bytes(changed), None)
    server.routes["/big/cifar-10-binary.tar.gz"] = (cifar.archive + bytes(10), None)
    with pytest.raises(DatasetError) as exc:
        cifar.load(mirrors=[server.base("c"), server.base("big")])
    message = str(exc.value)
    assert (f"download failed (tried {server.base('c')}cifar-10-binary.tar.gz: SHA-256 is "
            f"{hashlib.sha256(changed).hexdigest()}, expected {cifar.info.archive.sha256}; "
            f"{server.base('big')}cifar-10-binary.tar.gz: announces {len(cifar.archive) + 10} "
            f"bytes, more than the {len(cifar.archive)} this file can be)") in message
    assert "cifar-10-binary.tar.gz or its extracted cifar-10-batches-bin/ folder" in message
    assert list((cifar.tmp / "xdg").iterdir()) == []


def test_the_official_digest_is_checked(cifar):
    # The fixture's archive under the real registry entry: the wrong size, refused unread.
    path = cifar.tmp / "data" / "cifar-10-binary.tar.gz"
    path.parent.mkdir()
    path.write_bytes(cifar.archive)
    with pytest.raises(DatasetError) as exc:
        load_dataset("cifar10", cifar.tmp / "data", env=cifar.env)
    assert str(exc.value) == (f"{path}: is {len(cifar.archive)} bytes; expected 170052171 (the "
                              "official cifar-10-binary.tar.gz)")
    # Right size, other content: the SHA-256 says so.
    info = replace(cifar.info, archive=replace(cifar.info.archive, sha256="0" * 64))
    with pytest.raises(DatasetError, match=rf"^{path}: SHA-256 is [0-9a-f]{{64}}, expected 0{{64}} "
                       r"\(corrupt or not the official file\)$"):
        load_dataset(info, cifar.tmp / "data", env=cifar.env)


def test_an_extracted_batch_is_verified(cifar):
    folder = extract(cifar, cifar.tmp / "data")
    data = bytearray(cifar.batch("data_batch_3.bin"))
    data[5] ^= 1
    (folder / "data_batch_3.bin").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin: SHA-256 is [0-9a-f]{64}, "
                       r"expected [0-9a-f]{64} \(corrupt or not the official file\)$"):
        cifar.load(folder)
    (folder / "data_batch_3.bin").write_bytes(bytes(data[:-1]))
    with pytest.raises(DatasetError, match=rf"data_batch_3\.bin: is {len(data) - 1} bytes; "
                       rf"expected {len(data)} bytes \(records of 1 label byte and 3072 pixel "
                       r"bytes\)$"):
        cifar.load(folder)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin: missing; .* holds some of "
                       r"cifar10's batch files, and all 6 are needed$"):
        cifar.load(folder)


def test_an_archive_without_a_batch_names_it(tmp_path):
    c = build(tmp_path)
    batches = {n: c.batch(n) for n in BATCHES if n != "data_batch_2.bin"}
    archive = make_archive(batches)
    info = replace(c.info, archive=replace(c.info.archive, sha256=hashlib.sha256(archive)
                                           .hexdigest(), size=len(archive)))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    with pytest.raises(DatasetError, match=r"cifar-10-binary\.tar\.gz: has no data_batch_2\.bin "
                       r"\(expected cifar-10-batches-bin/ with data_batch_1\.bin, "):
        load_dataset(info, tmp_path, env=c.env, mirrors=[])


def test_a_label_out_of_range_is_refused(tmp_path):
    c = build(tmp_path, labels_of=lambda name, n: np.full(n, 10 if name == "test_batch.bin" else 1,
                                                          np.uint8))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(c.archive)
    with pytest.raises(DatasetError, match=r"cifar-10-binary\.tar\.gz \(test_batch\.bin\): label "
                       r"10 at index 0 is out of range; expected 0\.\.9 \(10 classes\)$"):
        c.load(tmp_path)


@pytest.mark.slow
def test_train_on_cifar10_from_the_cli(tmp_path, monkeypatch, capsys):
    import json
    from types import MappingProxyType

    from tfcnn import cli
    from tfcnn.data import registry

    c = build(tmp_path)
    # The fixture's digests stand in for the official ones (no test downloads CIFAR-10).
    monkeypatch.setattr(registry, "_REGISTRY",
                        MappingProxyType({**registry._REGISTRY, "cifar10": c.info}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-binary.tar.gz").write_bytes(c.archive)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                     "--limit-train", "256", "--epochs", "1", "--model", "16C3-P2-D10",
                     "--out", str(out), "--quiet"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "cifar10"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    # Downstream: evaluate finds the test set again from the run's config.json.
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(c["support"] for c in report["per_class"]) == 8  # the fixture's test batch
    assert [c["class"] for c in report["per_class"]] == list(REAL.class_names)
    assert report["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
