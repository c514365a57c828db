"""Time and peak memory of loading the registered datasets, and of refusing a gzip bomb.

    python benchmarks/dataset_loading.py --data-dir ../shared/datasets

Each measurement runs in a fresh process (peak memory: its VmHWM, Linux only) and
prints the median of `--repeats` runs: MNIST from its gzipped IDX files; a 2 MiB gzip
bomb (a valid 20x28x28 IDX header, then 2 GiB of zeros) given as an IDX file; and a
full-size CIFAR-10 copy (random records, its own digests: the official archive is not
on this machine) from the .tar.gz and from the extracted folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

_MEASURE = """
import json, sys, time
from dataclasses import replace
from pathlib import Path
what, arg = sys.argv[1], sys.argv[2]

def peak_kib():  # VmHWM: unlike ru_maxrss, not inherited from the parent across exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

from tfcnn.core.errors import DatasetError
from tfcnn.data import cifar
from tfcnn.data.idx import read_idx
from tfcnn.data.locate import load_dataset
from tfcnn.data.registry import get_dataset_info
base = peak_kib()
start = time.perf_counter()
if what == "mnist":
    load_dataset("mnist", arg, env={"HOME": "/nonexistent"}, download=False)
elif what == "bomb":
    try:
        read_idx(arg)
    except DatasetError:
        pass
else:
    spec = json.loads(Path(arg, "spec.json").read_text())
    real = get_dataset_info("cifar10")
    info = replace(real, files=tuple(replace(f, sha256=spec[f.filename]) for f in real.files),
                   archive=replace(real.archive, sha256=spec["archive"][0],
                                   size=spec["archive"][1]))
    name = "cifar-10-binary.tar.gz" if what == "cifar-archive" else "cifar-10-batches-bin"
    cifar.load_copy(Path(arg, name), info)
seconds = time.perf_counter() - start
peak = peak_kib()
print(json.dumps({"seconds": seconds, "growth_mib": (peak - base) / 1024,
                  "peak_mib": peak / 1024}))
"""


def _measure(what: str, arg: str, repeats: int) -> dict[str, float]:
    runs = [json.loads(subprocess.run([sys.executable, "-c", _MEASURE, what, arg], check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in ("seconds", "growth_mib", "peak_mib")}


def _bomb(folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_idx import gzip_bomb  # the test suite's bomb: one deflated MiB repeated
    from tfcnn.data.idx import encode_idx

    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(encode_idx(np.zeros((20, 28, 28), np.uint8)), 2048))
    return str(path)


def _cifar(folder: Path) -> str:
    from tfcnn.data.registry import get_dataset_info

    rng = np.random.default_rng(0)
    batches = folder / "cifar-10-batches-bin"
    batches.mkdir()
    spec = {}
    for f in get_dataset_info("cifar10").files:
        rows = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        rows[:, 0] %= 10
        (batches / f.filename).write_bytes(rows.tobytes())
        spec[f.filename] = hashlib.sha256(rows.tobytes()).hexdigest()
    archive = folder / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(batches, arcname="cifar-10-batches-bin")
    spec["archive"] = [hashlib.sha256(archive.read_bytes()).hexdigest(), archive.stat().st_size]
    (folder / "spec.json").write_text(json.dumps(spec))
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding mnist/")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"mnist": str(Path(args.data_dir).resolve()), "bomb": _bomb(Path(tmp))}
        cases["cifar-archive"] = cases["cifar-folder"] = _cifar(Path(tmp))
        for what, arg in cases.items():
            result = _measure(what, arg, args.repeats)
            print(f"{what:14s} {result['seconds']:6.2f} s  peak {result['peak_mib']:6.1f} MiB "
                  f"(+{result['growth_mib']:.1f} MiB while loading; median of {args.repeats})")


if __name__ == "__main__":
    main()
