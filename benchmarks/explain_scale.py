"""`tfcnn explain` at scale: `--layers` on a network with many convolutions, and
`--method all` on many images. Each measurement runs the real command in a child process
and reads its wall time and peak resident memory (the child's `ru_maxrss`, from `wait4`).

    python benchmarks/explain_scale.py layers RUN_DIR IMAGE [--repeats 3] [-- EXTRA FLAGS]
    python benchmarks/explain_scale.py many RUN_DIR --worst N [--repeats 1] [-- EXTRA FLAGS]

`layers`: `tfcnn explain RUN_DIR IMAGE --layers` (a `keras:MobileNetV3Small` run, say);
`many`: `tfcnn explain RUN_DIR --worst N --method all` on the run's own test set. Flags after
`--` go to the command (`--max-layers 0 --max-channels 0` draws everything). To compare
with an older tree, run this script with `PYTHONPATH=OLD/src`: the child inherits it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def measured(command: list[str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, files written) of one run of `command`;
    its output is discarded, a failure raises. On a shared machine the CPU time is the
    fairer figure."""
    out = tempfile.mkdtemp(prefix="explain-scale-")
    try:
        start = time.perf_counter()
        child = subprocess.Popen([*command, "--out", out], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        error = child.stderr.read().decode(errors="replace") if child.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{error[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return wall, cpu, usage.ru_maxrss / 1024, len(os.listdir(out))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("layers", "many"))
    parser.add_argument("run_dir")
    parser.add_argument("image", nargs="?", help="the image to explain (layers)")
    parser.add_argument("--worst", type=int, default=100, help="images explained (many)")
    parser.add_argument("--repeats", type=int, default=3)
    args, extra = parser.parse_known_args()
    extra = [flag for flag in extra if flag != "--"]
    tfcnn = [sys.executable, "-m", "tfcnn", "explain", args.run_dir]
    if args.kind == "layers":
        if not args.image:
            parser.error("layers: give the IMAGE to explain")
        command = [*tfcnn, args.image, "--layers", *extra]
    else:
        command = [*tfcnn, "--worst", str(args.worst), "--method", "all", *extra]
    runs = [measured(command) for _ in range(args.repeats)]
    walls, cpus, peaks = ([r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs])
    print(f"{' '.join(command[2:])}")
    print(f"  wall s: median {statistics.median(walls):.1f} "
          f"(runs {', '.join(f'{w:.1f}' for w in walls)})")
    print(f"  CPU s: median {statistics.median(cpus):.1f} "
          f"(runs {', '.join(f'{c:.1f}' for c in cpus)})")
    print(f"  peak RSS MB: median {statistics.median(peaks):.0f} "
          f"(runs {', '.join(f'{p:.0f}' for p in peaks)}); files written {runs[0][3]}")


if __name__ == "__main__":
    main()
