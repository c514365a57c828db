"""Finding, verifying and downloading datasets (tfcnn.data.locate).

Most tests use a tiny fake dataset ("tiny": 20 train / 10 test images) whose registry
entry carries the fixtures' own digests; downloads go to a local HTTP server only.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from tfcnn.core.errors import DatasetError
from tfcnn.data.idx import encode_idx, sha256_of_idx, write_idx
from tfcnn.data.locate import describe_source, load_dataset, tfcnn_cache_dir
from tfcnn.data.registry import OFFICIAL_FILENAMES, ROLES, DatasetFile, DatasetInfo

FILENAMES = [OFFICIAL_FILENAMES[r] for r in ROLES]


def make_arrays(seed: int = 0, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_folder(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    for role in ROLES:
        name = OFFICIAL_FILENAMES[role]
        write_idx(folder / (name if gz else name[:-3]), arrays[role])
    return folder


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x_train=arrays["train_images"], y_train=arrays["train_labels"],
                        x_test=arrays["test_images"], y_test=arrays["test_labels"])
    return path


@dataclass
class Tiny:
    tmp: Path
    arrays: dict[str, np.ndarray]
    info: DatasetInfo
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def keras_npz(self) -> Path:
        return self.tmp / "home" / ".keras" / "datasets" / "tiny.npz"

    @property
    def system_dir(self) -> Path:
        return Path(self.info.system_dirs[0])

    @property
    def xdg(self) -> Path:
        return self.tmp / "xdg"

    @property
    def cache(self) -> Path:
        return self.xdg / "tfcnn" / "tiny"

    def load(self, data_dir=None, **kwargs):
        kwargs.setdefault("mirrors", [])
        return load_dataset(self.info, data_dir, env=self.env, **kwargs)


def info_for(arrays: dict[str, np.ndarray], tmp: Path, **overrides) -> DatasetInfo:
    files = tuple(DatasetFile(r, OFFICIAL_FILENAMES[r], sha256_of_idx(arrays[r]),
                              len(encode_idx(arrays[r]))) for r in ROLES)
    base = DatasetInfo(name="tiny", class_names=tuple("0123456789"), files=files,
                       keras_cache="tiny.npz", system_dirs=(str(tmp / "system" / "tiny"),),
                       dir_names=("tiny", "tiny-alias"))
    return replace(base, **overrides)


@pytest.fixture
def tiny(tmp_path) -> Tiny:
    arrays = make_arrays()
    (tmp_path / "xdg").mkdir()
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return Tiny(tmp_path, arrays, info_for(arrays, tmp_path), env)


def assert_same(ds, arrays):
    for attr, role in [("x_train", "train_images"), ("y_train", "train_labels"),
                       ("x_test", "test_images"), ("y_test", "test_labels")]:
        got = getattr(ds, attr)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[role])
    assert ds.name == "tiny" and ds.class_names == tuple("0123456789")


# --- local places, in order ---------------------------------------------------------------

def test_places_are_tried_in_order(tiny):
    env_dir = write_folder(tiny.tmp / "envdata", tiny.arrays)  # files directly in the folder
    tiny.env["TFCNN_DATA_DIR"] = str(env_dir)
    write_npz(tiny.keras_npz, tiny.arrays)
    write_folder(tiny.system_dir, tiny.arrays)
    write_folder(tiny.cache, tiny.arrays)

    expected = [(env_dir, lambda: tiny.env.pop("TFCNN_DATA_DIR")),
                (tiny.keras_npz, tiny.keras_npz.unlink),
                (tiny.system_dir, lambda: shutil.rmtree(tiny.system_dir)),
                (tiny.cache, lambda: None)]
    for place, remove in expected:
        assert describe_source(tiny.info, env=tiny.env) == str(place)
        ds = tiny.load()
        assert ds.source == str(place)
        assert_same(ds, tiny.arrays)
        remove()


def test_an_explicit_data_dir_wins_over_every_other_place(tiny):
    data_sub = write_folder(tiny.data_dir / "tiny", tiny.arrays)
    tiny.env["TFCNN_DATA_DIR"] = str(write_folder(tiny.tmp / "envdata", make_arrays(seed=5)))
    write_folder(tiny.cache, make_arrays(seed=6))
    assert describe_source(tiny.info, tiny.data_dir, env=tiny.env) == str(data_sub)
    ds = tiny.load(tiny.data_dir)
    assert ds.source == str(data_sub)
    assert_same(ds, tiny.arrays)


def test_an_explicit_data_dir_without_the_dataset_fails_on_that_folder(tiny, server):
    # Good copies elsewhere and a working mirror must not be used: the user named a folder.
    server.serve("m", tiny.arrays)
    tiny.env["TFCNN_DATA_DIR"] = str(write_folder(tiny.tmp / "envdata", tiny.arrays))
    write_folder(tiny.cache, tiny.arrays)
    empty = tiny.tmp / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as exc:
        tiny.load(empty, mirrors=[server.base("m")])
    assert str(exc.value) == (
        f"--data-dir {empty}: holds no copy of tiny (looked in {empty / 'tiny'}, "
        f"{empty / 'tiny-alias'}, {empty} for the four IDX files ({', '.join(FILENAMES)})). "
        "Fix: point --data-dir at the folder that holds them, or leave it out to search "
        "TFCNN_DATA_DIR, the caches and then download")
    assert server.requests == []
    assert describe_source(tiny.info, empty, env=tiny.env).startswith(
        f"not found: --data-dir {empty}: holds no copy of tiny")
    with pytest.raises(DatasetError, match=rf"^--data-dir {tiny.tmp / 'nope'}: no such directory$"):
        tiny.load(tiny.tmp / "nope", mirrors=[server.base("m")])


def test_a_relative_data_dir_is_resolved_and_its_origin_named(tiny, monkeypatch):
    write_folder(tiny.data_dir / "tiny", tiny.arrays)
    monkeypatch.chdir(tiny.tmp)
    ds = tiny.load("data")
    assert ds.source == str(tiny.data_dir / "tiny")  # absolute
    (tiny.data_dir / "tiny" / "train-images-idx3-ubyte.gz").unlink()
    (tiny.data_dir / "tiny" / "train-labels-idx1-ubyte.gz").unlink()
    (tiny.data_dir / "tiny" / "t10k-images-idx3-ubyte.gz").unlink()
    (tiny.data_dir / "tiny" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=rf"^run/config\.json data_dir {tiny.data_dir}: holds "
                       r"no copy of tiny .* Fix: point run/config\.json data_dir at"):
        tiny.load("data", origin="run/config.json data_dir")


def test_data_dir_alias_folder_and_uncompressed_files(tiny):
    write_folder(tiny.data_dir / "tiny-alias", tiny.arrays, gz=False)
    ds = tiny.load(tiny.data_dir)
    assert ds.source == str(tiny.data_dir / "tiny-alias")
    assert_same(ds, tiny.arrays)


def test_keras_cache_folder_layout(tiny):
    info = replace(tiny.info, keras_cache="tiny-folder")
    folder = write_folder(tiny.tmp / "home" / ".keras" / "datasets" / "tiny-folder", tiny.arrays)
    ds = load_dataset(info, env=tiny.env, mirrors=[])
    assert ds.source == str(folder)
    assert_same(ds, tiny.arrays)


def test_keras_home_is_honoured(tiny):
    tiny.env["KERAS_HOME"] = str(tiny.tmp / "kh")
    npz = write_npz(tiny.tmp / "kh" / "datasets" / "tiny.npz", tiny.arrays)
    assert tiny.load().source == str(npz)


def test_keras_npz_is_verified(tiny):
    bad = {**tiny.arrays, "train_images": tiny.arrays["train_images"].copy()}
    bad["train_images"][3, 4, 5] ^= 1
    write_npz(tiny.keras_npz, bad)
    write_folder(tiny.cache, tiny.arrays)  # a good copy later in the order must not be used
    with pytest.raises(DatasetError, match=r"tiny\.npz\[x_train\]: SHA-256 of the IDX content"):
        tiny.load()


@pytest.mark.parametrize(("content", "fragment"), [
    (b"not a zip", "cannot read as .npz"),
    (b"", "cannot read as .npz"),
])
def test_unreadable_npz(tiny, content, fragment):
    tiny.keras_npz.parent.mkdir(parents=True)
    tiny.keras_npz.write_bytes(content)
    with pytest.raises(DatasetError, match=fragment) as exc:
        tiny.load()
    assert str(exc.value).startswith(str(tiny.keras_npz))


def test_npz_missing_key(tiny):
    tiny.keras_npz.parent.mkdir(parents=True)
    np.savez(tiny.keras_npz, x_train=tiny.arrays["train_images"])
    with pytest.raises(DatasetError, match=r"tiny\.npz: has no array 'y_train' \(holds x_train"):
        tiny.load()


# --- a bad local copy raises, naming the file ----------------------------------------------

def test_wrong_checksum_raises_instead_of_falling_through(tiny):
    changed = {**tiny.arrays, "test_labels": (tiny.arrays["test_labels"] + 1) % 10}
    folder = write_folder(tiny.data_dir, changed)
    write_folder(tiny.cache, tiny.arrays)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DatasetError, match=r"SHA-256 of the IDX content is [0-9a-f]{64}, "
                       r"expected [0-9a-f]{64} \(corrupt or not the official file\)$") as exc:
        tiny.load(tiny.data_dir)
    assert str(exc.value).startswith(f"{path}: ")


def test_truncated_local_file_raises(tiny):
    folder = write_folder(tiny.system_dir, tiny.arrays)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(tiny.arrays["train_images"])[:-28]))
    with pytest.raises(DatasetError, match=r"needs 15696 \(truncated\)") as exc:
        tiny.load()
    assert str(exc.value).startswith(f"{path}: ")


def test_missing_sibling_raises(tiny):
    folder = write_folder(tiny.data_dir, tiny.arrays)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as exc:
        tiny.load(tiny.data_dir)
    assert str(exc.value) == (f"{folder / 'train-labels-idx1-ubyte.gz'}: missing (or "
                              f"train-labels-idx1-ubyte); {folder} holds some of tiny's files, "
                              "and all four are needed")


def test_corrupt_tfcnn_cache_suggests_deleting_it(tiny):
    write_folder(tiny.cache, tiny.arrays)
    (tiny.cache / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(DatasetError, match=rf"delete {tiny.cache} to download it again$"):
        tiny.load()


def test_count_mismatch_names_both_files(tmp_path):
    arrays = {**make_arrays(), "train_labels": make_arrays()["train_labels"][:19]}
    info = info_for(arrays, tmp_path)
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DatasetError) as exc:
        load_dataset(info, folder, env={"HOME": str(tmp_path)}, mirrors=[])
    assert str(exc.value) == (f"{folder / 'train-images-idx3-ubyte.gz'} has 20 train images but "
                              f"{folder / 'train-labels-idx1-ubyte.gz'} has 19 labels; "
                              "expected equal counts")


def test_label_out_of_range(tmp_path):
    arrays = make_arrays()
    arrays["test_labels"][7] = 10
    info = info_for(arrays, tmp_path)
    write_npz(tmp_path / ".keras" / "datasets" / "tiny.npz", arrays)
    with pytest.raises(DatasetError, match=r"tiny\.npz\[y_test\]: label 10 at index 7 is out of "
                       r"range; expected 0\.\.9 \(10 classes\)$"):
        load_dataset(info, env={"HOME": str(tmp_path)}, mirrors=[])


def test_wrong_image_shape(tmp_path):
    arrays = {**make_arrays(), "test_images": np.zeros((10, 28, 27), np.uint8)}
    info = info_for(arrays, tmp_path)
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: holds uint8 of shape "
                       r"\(10, 28, 27\); expected uint8 images of shape \(N, 28, 28\)$"):
        load_dataset(info, folder, env={"HOME": str(tmp_path)}, mirrors=[])


# --- downloads (local HTTP server only) ----------------------------------------------------

@dataclass
class Server:
    port: int
    routes: dict[str, tuple[bytes, int | None]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    # path -> a function writing the response body itself (after the headers)
    streams: dict[str, Callable[[BinaryIO], None]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # bytes a stream managed to send

    def base(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.port}/{prefix}/"

    def serve(self, prefix: str, arrays: dict[str, np.ndarray]) -> None:
        for role in ROLES:
            body = gzip.compress(encode_idx(arrays[role]))
            self.routes[f"/{prefix}/{OFFICIAL_FILENAMES[role]}"] = (body, None)


@pytest.fixture
def server():
    state = Server(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.requests.append(self.path)
            if self.path in state.streams:
                self.send_response(200)
                length = state.routes.get(self.path, (b"", None))[1]
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client hung up: what streams expect
                    state.streams[self.path](self.wfile)
                return
            if self.path not in state.routes:
                self.send_error(404)
                return
            body, length = state.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def dead_base() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_lands_in_cache_then_cache_is_used(tiny, server, capfd):
    server.serve("m", tiny.arrays)
    ds = tiny.load(mirrors=[server.base("m")], progress=True)
    assert ds.source == f"download -> {tiny.cache}"
    assert_same(ds, tiny.arrays)
    assert sorted(p.name for p in tiny.cache.iterdir()) == sorted(FILENAMES)
    assert len(server.requests) == 4
    assert capfd.readouterr().err == ""  # progress bars stay silent off a terminal

    again = tiny.load(mirrors=[server.base("m")])
    assert again.source == str(tiny.cache)
    assert_same(again, tiny.arrays)
    assert len(server.requests) == 4


def test_first_mirror_bad_second_good(tiny, server):
    server.serve("good", tiny.arrays)
    ds = tiny.load(mirrors=[server.base("missing"), server.base("good")], progress=False)
    assert_same(ds, tiny.arrays)
    assert server.requests[:2] == ["/missing/train-images-idx3-ubyte.gz",
                                   "/good/train-images-idx3-ubyte.gz"]


def test_mirrors_from_env_and_explicit_override(tiny, server):
    server.serve("env", tiny.arrays)
    server.serve("arg", tiny.arrays)
    tiny.env["TFCNN_MIRRORS"] = f" {dead_base()} , {server.base('env')}"
    load_dataset(tiny.info, env=tiny.env, progress=False)
    assert {r.split("/")[1] for r in server.requests} == {"env"}
    shutil.rmtree(tiny.cache)
    load_dataset(tiny.info, env=tiny.env, mirrors=[server.base("arg").rstrip("/")],
                 progress=False)
    assert server.requests[-1] == "/arg/t10k-labels-idx1-ubyte.gz"


def _break(server: Server, prefix: str, filename: str, how: str, arrays) -> None:
    body, _ = server.routes[f"/{prefix}/{filename}"]
    if how == "short-body":
        server.routes[f"/{prefix}/{filename}"] = (body[:-100], len(body))
    elif how == "cut-gzip":
        server.routes[f"/{prefix}/{filename}"] = (body[: len(body) // 2], None)
    else:  # a valid file with other content
        other = make_arrays(seed=1)[{v: k for k, v in OFFICIAL_FILENAMES.items()}[filename]]
        server.routes[f"/{prefix}/{filename}"] = (gzip.compress(encode_idx(other)), None)


@pytest.mark.parametrize(("how", "reason"), [
    ("short-body", r"truncated: received \d+ of \d+ bytes"),
    ("cut-gzip", r"corrupt or truncated gzip data \(.*\)"),
    ("checksum", r"SHA-256 of the IDX content is [0-9a-f]{64}, expected [0-9a-f]{64}"),
])
@pytest.mark.parametrize("filename", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_bad_download_leaves_nothing(tiny, server, how, reason, filename):
    server.serve("m", tiny.arrays)
    _break(server, "m", filename, how, tiny.arrays)
    url = server.base("m") + filename
    with pytest.raises(DatasetError, match=rf"download failed \(tried {url}: {reason}\)\. Fix:"):
        tiny.load(mirrors=[server.base("m")], progress=False)
    assert list(tiny.xdg.iterdir()) == []  # no temp files, no partial files, no folders


def test_all_mirrors_fail_lists_every_url(tiny, server):
    server.serve("m", tiny.arrays)
    _break(server, "m", "train-images-idx3-ubyte.gz", "checksum", tiny.arrays)
    dead = dead_base()
    with pytest.raises(DatasetError) as exc:
        tiny.load(mirrors=[server.base("m"), server.base("nothing"), dead], progress=False)
    message = str(exc.value)
    assert f"tried {server.base('m')}train-images-idx3-ubyte.gz: SHA-256" in message
    assert f"; {server.base('nothing')}train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"; {dead}train-images-idx3-ubyte.gz: " in message
    assert "\n" not in message
    assert list(tiny.xdg.iterdir()) == []


def test_failure_keeps_existing_empty_cache_folder(tiny):
    tiny.cache.mkdir(parents=True)
    with pytest.raises(DatasetError):
        tiny.load(mirrors=[dead_base()], progress=False)
    assert tiny.cache.is_dir() and list(tiny.cache.iterdir()) == []


def test_nothing_local_and_no_network_is_one_line(tiny):
    dead = dead_base()
    with pytest.raises(DatasetError) as exc:
        tiny.load(mirrors=[dead], timeout=5)
    message = str(exc.value)
    home = tiny.tmp / "home"
    looked = (f"dataset 'tiny' not found; looked in: "
              f"TFCNN_DATA_DIR (not set), {home}/.keras/datasets/tiny.npz, {tiny.system_dir}, "
              f"{tiny.cache}; download failed (tried {dead}train-images-idx3-ubyte.gz: ")
    assert message.startswith(looked)
    assert message.endswith("). Fix: pass --data-dir DIR with the four IDX files ("
                            + ", ".join(FILENAMES) + "), or set TFCNN_DATA_DIR, "
                            "or connect to the internet.")
    assert "\n" not in message
    assert list(tiny.xdg.iterdir()) == []


def test_download_disabled(tiny, server):
    server.serve("m", tiny.arrays)
    tiny.env["TFCNN_DATA_DIR"] = str(tiny.tmp / "empty")
    with pytest.raises(DatasetError, match=r"TFCNN_DATA_DIR=\S+empty \(no files\), .*; "
                       r"download disabled\. Fix:"):
        tiny.load(download=False, mirrors=[server.base("m")])
    assert server.requests == []


def test_describe_source_does_not_download(tiny, server):
    assert describe_source(tiny.info, env=tiny.env, mirrors=[server.base("m")]) == (
        f"not found locally; would download from {server.base('m')} into {tiny.cache}")
    tiny.env["TFCNN_MIRRORS"] = "https://a.example/,https://b.example/"
    assert describe_source(tiny.info, env=tiny.env).startswith(
        "not found locally; would download from https://a.example/ or https://b.example/ into")
    assert server.requests == [] and list(tiny.xdg.iterdir()) == []


def test_cache_dir_from_env(tmp_path):
    assert tfcnn_cache_dir({"HOME": "/h"}) == Path("/h/.cache/tfcnn")
    assert tfcnn_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/tfcnn")
    assert tfcnn_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "rel"}) == Path("/h/.cache/tfcnn")


# --- the real datasets ---------------------------------------------------------------------

def test_real_mnist_from_data_dir(shared_datasets_dir, tmp_path):
    start = time.perf_counter()
    ds = load_dataset("mnist", shared_datasets_dir, env={"HOME": str(tmp_path)}, download=False)
    elapsed = time.perf_counter() - start
    assert ds.source == str(shared_datasets_dir / "mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == ds.y_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982,
                                               892, 958, 1028, 974, 1009]
    assert abs(float(ds.x_train.mean()) - 33.3184) < 1e-3
    assert elapsed < 10, f"loading MNIST took {elapsed:.1f} s"


def test_mixed_up_folder_says_whose_file_it_is(shared_datasets_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: SHA-256 .* \(it is "
                       r"mnist's train_images\)$"):
        load_dataset("fashion-mnist", shared_datasets_dir / "mnist",
                     env={"HOME": str(tmp_path)}, download=False)


# --- hostile or broken mirrors: bounded size, time and leftovers ---------------------------

def _zeros_forever(limit: int) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        chunk = bytes(64 << 10)
        for _ in range(limit // len(chunk)):  # bounded, so a broken client ends too
            out.write(chunk)
    return write


def test_a_mirror_sending_forever_is_cut_at_the_largest_size_the_file_can_be(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/train-images-idx3-ubyte.gz"
    server.streams[path] = _zeros_forever(64 << 20)  # no Content-Length: ends when it likes
    bound = 15696 + 15696 // 1000 + 4096
    with pytest.raises(DatasetError, match=rf"tried http://127\.0\.0\.1:\d+{path}: sent more "
                       rf"than {bound} bytes, the most this file can be; stopped reading\)"):
        tiny.load(mirrors=[server.base("m")], progress=False)
    assert list(tiny.xdg.iterdir()) == []


def test_a_mirror_announcing_too_much_is_refused_before_reading(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/t10k-labels-idx1-ubyte.gz"
    server.routes[path] = (b"", 5 << 30)
    server.streams[path] = _zeros_forever(1 << 20)
    with pytest.raises(DatasetError, match=rf"{path}: announces {5 << 30} bytes, more than the "
                       r"\d+ this file can be"):
        tiny.load(mirrors=[server.base("m")], progress=False)


def test_a_gzip_bomb_from_a_mirror_is_refused(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/train-images-idx3-ubyte.gz"
    # Under the download bound, but decompressing to 2 MiB past what its header declares
    # (a bigger bomb is refused by its size: see the tests above).
    bomb = gzip.compress(encode_idx(tiny.arrays["train_images"]) + bytes(2 << 20))
    server.routes[path] = (bomb, None)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: decompressed content "
                       r"is at least \d+ bytes, but its header \(20x28x28 uint8\) needs 15696 "
                       r"\(at least 1048576 trailing bytes\)\)"):
        tiny.load(mirrors=[server.base("m")], progress=False)


def test_a_gzip_bomb_in_a_data_dir_is_one_line(tiny):
    folder = write_folder(tiny.data_dir, tiny.arrays)
    bomb = folder / "t10k-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(encode_idx(tiny.arrays["test_images"]) + bytes(8 << 20)))
    with pytest.raises(DatasetError) as exc:
        tiny.load(tiny.data_dir)
    assert str(exc.value).startswith(f"{bomb}: decompressed content is at least ")
    assert "\n" not in str(exc.value)


def _trickle(interval: float, limit: int) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        for _ in range(limit):
            out.write(b"\x1f")
            out.flush()
            time.sleep(interval)
    return write


def test_a_trickling_mirror_meets_the_deadline(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/train-labels-idx1-ubyte.gz"
    server.routes[path] = (b"", 30)
    server.streams[path] = _trickle(0.4, 30)  # 1 byte per 0.4 s: 12 s for the whole file
    with pytest.raises(DatasetError, match=rf"{path}: too slow: \d+ bytes in 1\.5 s, the "
                       r"deadline per file \(TFCNN_DOWNLOAD_DEADLINE sets it\)"):
        tiny.load(mirrors=[server.base("m")], progress=False, deadline=1.5)


def test_the_deadline_comes_from_the_environment(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/train-images-idx3-ubyte.gz"
    server.routes[path] = (b"", 30)
    server.streams[path] = _trickle(0.4, 30)
    tiny.env["TFCNN_DOWNLOAD_DEADLINE"] = "1"
    with pytest.raises(DatasetError, match=r"too slow: \d+ bytes in 1 s"):
        tiny.load(mirrors=[server.base("m")], progress=False)
    tiny.env["TFCNN_DOWNLOAD_DEADLINE"] = "soon"
    with pytest.raises(DatasetError, match=r"^TFCNN_DOWNLOAD_DEADLINE='soon': expected a number "
                       r"of seconds > 0$"):
        tiny.load(mirrors=[server.base("m")], progress=False)


def test_a_stalled_mirror_hits_the_read_timeout(tiny, server):
    server.serve("m", tiny.arrays)
    path = "/m/train-images-idx3-ubyte.gz"
    release = threading.Event()
    server.routes[path] = (b"", 100)
    server.streams[path] = lambda out: release.wait(30)  # headers, then nothing
    try:
        with pytest.raises(DatasetError, match=rf"{path}: no data for the read timeout; stopped"):
            tiny.load(mirrors=[server.base("m")], progress=False, timeout=1)
    finally:
        release.set()


_KILLED_DOWNLOAD = """
import json, sys
from tfcnn.data.locate import load_dataset
from tfcnn.data.registry import DatasetFile, DatasetInfo
spec = json.loads(sys.argv[1])
info = DatasetInfo(name="tiny", class_names=tuple("0123456789"),
                   files=tuple(DatasetFile(*f) for f in spec["files"]))
load_dataset(info, env=spec["env"], mirrors=[spec["mirror"]], progress=False)
"""


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(".*") if ".tmp" in p.name) if folder.is_dir() else []


def test_a_killed_download_leaves_temp_files_that_the_next_run_removes(tiny, server):
    import json

    server.serve("m", tiny.arrays)
    path = "/m/train-labels-idx1-ubyte.gz"
    release = threading.Event()
    body, _ = server.routes[path]
    server.routes[path] = (body, len(body))

    def stall(out: BinaryIO) -> None:
        out.write(body[:10])
        out.flush()
        release.wait(60)
    server.streams[path] = stall
    spec = {"files": [[f.role, f.filename, f.sha256, f.size] for f in tiny.info.files],
            "env": tiny.env, "mirror": server.base("m")}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_DOWNLOAD, json.dumps(spec)])
    try:
        for _ in range(1200):  # until the second file's download has begun (at most 60 s)
            if len(_temps(tiny.cache)) == 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()  # kill -9: no clean-up runs
    finally:
        proc.wait()
        release.set()
    left = _temps(tiny.cache)
    assert len(left) == 2 and all(p.name.endswith(f".tmp.{proc.pid}") for p in left)
    # Another process's download still in progress is left alone, and so is a fresh temp.
    live = tiny.cache / f".t10k-images-idx3-ubyte.gz.abc.tmp.{os.getpid()}"
    live.write_bytes(b"x")
    old = tiny.cache / ".t10k-labels-idx1-ubyte.gz.def.tmp"  # no process id: by its age
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 86400, time.time() - 86400))

    del server.streams[path]
    server.routes[path] = (body, None)
    ds = tiny.load(mirrors=[server.base("m")], progress=False)
    assert_same(ds, tiny.arrays)
    assert _temps(tiny.cache) == [live]
    assert sorted(p.name for p in tiny.cache.iterdir() if not p.name.startswith(".")) == sorted(
        FILENAMES)
