"""Decoding speed of the one image decoder, with and without the reduced JPEG decode.

    python benchmarks/decode_speed.py --data-dir ../shared/datasets

`tfcnn.images.prepare.decode_for_model` lets a JPEG decode at 1/2, 1/4 or 1/8 scale when
that still leaves max(H, W) pixels per side; "full" decodes every pixel then resizes
(`to_pixels(load_image(path), ...)`). Times both over fashion_photos JPEGs (54-180 px) and a
synthetic 12-megapixel JPEG (4032×3024, a phone photo), and prints the median of several
passes in CPU milliseconds per image.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tfcnn.images.decode import load_image
from tfcnn.images.prepare import decode_for_model, to_pixels


def _cpu_ms(decode: Callable[[Path], object], paths: list[Path]) -> float:
    # CPU time of this process: other work sharing the cores inflates it far less than
    # wall time (the numbers in docs/benchmarks.md were taken on a busy 2-core machine).
    start = time.process_time()
    for path in paths:
        decode(path)
    return (time.process_time() - start) / len(paths) * 1000


def _medians(full: Callable[[Path], object], reduced: Callable[[Path], object],
             paths: list[Path], repeats: int) -> tuple[float, float]:
    """Median ms/image of each, the two measured alternately so drifts hit both alike."""
    pairs = [(_cpu_ms(full, paths), _cpu_ms(reduced, paths)) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def _phone_photo(folder: Path) -> Path:
    path = folder / "photo.jpg"
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    small.resize((4032, 3024), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    photos = sorted(Path(args.data_dir, "fashion_photos", "train").glob("*/*.jpg"))
    photos = photos[::max(1, len(photos) // args.files)][:args.files]
    with tempfile.TemporaryDirectory() as folder:
        cases = [("fashion_photos", photos, size, channels)
                 for size in (28, 64) for channels in (1, 3)]
        big = [_phone_photo(Path(folder))] * 5
        cases += [("12 Mpx JPEG", big, size, 3) for size in (64, 224)]
        print("| images | H×W×C | full decode, ms/image | reduced decode, ms/image | speed-up |")
        print("|---|---|---|---|---|")
        for name, paths, size, channels in cases:
            full, reduced = _medians(
                lambda p, s=size, c=channels: to_pixels(load_image(p), s, s, c),
                lambda p, s=size, c=channels: decode_for_model(p, s, s, c),
                paths, args.repeats)
            print(f"| {name} ({len(paths)}) | {size}×{size}×{channels} | {full:.3f} | "
                  f"{reduced:.3f} | {full / reduced:.2f}× |")


if __name__ == "__main__":
    main()
