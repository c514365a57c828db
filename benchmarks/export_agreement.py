"""Do the exports answer image files as `tfcnn predict` does? Top-1 agreement and the largest
probability difference, per export and signature, on the same files.

    python benchmarks/export_agreement.py RUN IMAGE_FOLDER [--count 1000] [--resize 2.0]

IMAGE_FOLDER's images (recursively; PNG/JPEG) are read by `tfcnn predict`'s path
(`Classifier.predict_files`) and by each export as a client holding the file would call it:
- SavedModel `serving_bytes`: the file's bytes;
- SavedModel `serving_uint8`: the file decoded by Pillow at its own size (first frame);
- TFLite and ONNX (uint8 at the model's size): the file decoded and resized by Pillow
  (tfcnn's decoder, `decode_for_model`), as an app must do for a fixed-size input.
`--resize F` first writes copies of the files scaled by F (and made non-square), so the
graphs' own resize is exercised. Prints a Markdown table; `--json` for the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def image_files(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    step = max(1, len(files) // count)
    return files[::step][:count]


def resized_copies(files: list[Path], factor: float, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for i, file in enumerate(files):
        with Image.open(file) as image:
            w, h = image.size
            size = (max(1, round(w * factor)), max(1, round(h * factor * 0.8)))
            copy = out / f"{i:05d}{file.suffix}"
            image.resize(size, Image.Resampling.BICUBIC).save(copy)
            copies.append(copy)
    return copies


def compare(reference: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"top1_agreement": round(float((reference.argmax(1) == probs.argmax(1)).mean()), 4),
            "max_probability_difference": round(float(np.abs(reference - probs).max()), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("images")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--resize", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import tfcnn
    from tfcnn.export.verify import file_probabilities, verify_export
    from tfcnn.images.prepare import decode_for_model

    clf = tfcnn.load(args.run)
    files = image_files(Path(args.images), args.count)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.resize:
            files = resized_copies(files, args.resize, tmp / "resized")
        predicted = clf.predict_files(files, top_k=len(clf.class_names))
        names = clf.class_names
        reference = np.array([[{t["label"]: t["probability"] for t in r["top_k"]}[n]
                               for n in names] for r in predicted])
        results: dict[str, Any] = {}
        clf.export(tmp / "sm", "saved_model")
        for signature in ("serving_bytes", "serving_uint8"):
            probs, _ = file_probabilities(tmp / "sm", signature, files)
            results[f"saved_model {signature}"] = compare(reference, probs)
        pixels = np.stack([decode_for_model(f, *clf.image_shape) for f in files])
        for fmt, name in (("tflite", "m.tflite"), ("onnx", "m.onnx")):
            clf.export(tmp / name, fmt)
            results[f"{fmt} uint8"] = compare(reference, verify_export(tmp / name, fmt, pixels))
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "run": args.run,
              "images": len(files), "source": args.images, "resize": args.resize,
              "seconds": round(time.perf_counter() - started, 1), "exports": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['date']}, {report['cpu']}: {len(files)} files from {args.images}"
          + (f", resized x{args.resize} (height x{0.8 * args.resize:g})" if args.resize else ""))
    print("| export | top-1 agreement with tfcnn predict | largest probability difference |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['top1_agreement']:.2f}% | "
              f"{r['max_probability_difference']:.2g} |")


if __name__ == "__main__":
    main()
