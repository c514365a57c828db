"""`tfcnn serve` against a naive peer (benchmarks/serve_peer.py: FastAPI + uvicorn calling
the Keras model per request), measured by `hey` (Debian package) with single-image v1 JSON
`:predict` requests (one MNIST test image), on the same machine (issue 25, item 11).

    python benchmarks/serve_vs_peer.py RUN_DIR|MODEL [--rounds 3] [--data-dir DIR]
        [--only c1,c32,paced] [--baseline-src OTHER_TREE/src]

The servers run at once, each on a free port of 127.0.0.1 (an idle one costs nothing):
tfcnn, the peer, and with `--baseline-src` a second `tfcnn serve` from another tree's
sources ("base", e.g. `git archive` of an older commit). Each round runs every load on
each server, one right after the other, the order reversed in even rounds, so that all
see the same load from other jobs. The loads:

    c1     1 client, one request after the other, 2,000 requests
    c32    32 clients flat out, 10,016 requests
    paced  8 clients at 50 requests/s each (hey -q 50: 400 requests/s offered), 2,000

Prints one JSON line per measurement (with the 1-minute load average and, for tfcnn, the
mean number of images per model call) and a table of the medians over rounds per server
and load: requests/s, p50, p99, errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import get_json, load_images, start_server  # noqa: E402
from serve_wrk import run_hey  # noqa: E402

LOADS = {"c1": {"clients": 1, "requests": 2000, "rate": None},
         "c32": {"clients": 32, "requests": 10_016, "rate": None},
         "paced": {"clients": 8, "requests": 2000, "rate": 50.0}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_peer(model: str, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_peer.py")),
                                model, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=log_path.open("w"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the peer exited with {process.returncode}; see {log_path}")
        try:
            get_json("127.0.0.1", port, "/ready")
            return process, port
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the peer did not start within 120 s")


def predictions(port: int, path: str, body: bytes) -> np.ndarray:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return np.array(json.loads(conn.getresponse().read())["predictions"])
    finally:
        conn.close()


def batching(port: int, server: str) -> tuple[int, int] | None:
    """(model calls, images) so far, from tfcnn's /info; None for the peer."""
    if server == "peer":
        return None
    stats = get_json("127.0.0.1", port, "/info")["batching"]
    return stats["batches"], stats["images"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="RUN_DIR|MODEL to serve")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(LOADS), help="loads to run, of "
                                                               f"{', '.join(LOADS)}")
    parser.add_argument("--data-dir", default=os.environ.get("TFCNN_DATA_DIR"))
    parser.add_argument("--log-dir", default=tempfile.gettempdir(),
                        help="where the servers' logs go")
    parser.add_argument("--baseline-src", help="also serve tfcnn from this src folder")
    args = parser.parse_args()
    loads = [name for name in args.only.split(",") if name]
    unknown = set(loads) - set(LOADS)
    if unknown:
        parser.error(f"--only: unknown load {sorted(unknown)[0]!r}")

    images, _ = load_images(args.data_dir, 1)
    body = Path(tempfile.mkstemp(suffix=".json")[1])
    body.write_text(json.dumps({"instances": [[[round(float(v), 4) for v in row]
                                               for row in images[0]]]}))
    log_dir = Path(args.log_dir)
    processes, ports = {}, {}
    processes["tfcnn"], ports["tfcnn"] = start_server(
        args.model, log_dir / "serve_vs_peer-tfcnn.log", None)
    processes["peer"], ports["peer"] = start_peer(args.model, log_dir / "serve_vs_peer-peer.log")
    if args.baseline_src:
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
        processes["base"], ports["base"] = start_server(
            args.model, log_dir / "serve_vs_peer-base.log", None, env)
    rows: list[dict] = []
    try:
        name = get_json("127.0.0.1", ports["tfcnn"], "/info")["name"]
        urls = {server: (port, f"/v1/models/{'peer' if server == 'peer' else name}:predict")
                for server, port in ports.items()}
        answers = {server: predictions(port, path, body.read_bytes())
                   for server, (port, path) in urls.items()}
        gap = max(float(np.abs(a - answers["tfcnn"]).max()) for a in answers.values())
        print(json.dumps({"largest_difference_from_tfcnns_answer": gap}), flush=True)
        for port, path in urls.values():  # warm-up, not reported
            run_hey(f"http://127.0.0.1:{port}{path}", body, 8, 1000)
        for round_ in range(1, args.rounds + 1):
            order = list(urls) if round_ % 2 else list(reversed(urls))
            for load in loads:
                for server in order:
                    port, path = urls[server]
                    before = os.getloadavg()[0]
                    calls = batching(port, server)
                    result = run_hey(f"http://127.0.0.1:{port}{path}", body, **LOADS[load])
                    result.update(server=server, load=load, round=round_,
                                  load_1min=round(before, 2))
                    if calls is not None:  # tfcnn: images per model call during the load
                        after = batching(port, server)
                        result["mean_batch"] = round((after[1] - calls[1])
                                                     / max(after[0] - calls[0], 1), 2)
                    rows.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(30)
        body.unlink()
    print(f"\n{'load':>6} {'server':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'load avg':>9}   (medians of {args.rounds} rounds)")
    for load in loads:
        for server in urls:
            mine = [r for r in rows if r["load"] == load and r["server"] == server]
            med = {key: statistics.median(r[key] for r in mine)
                   for key in ("rps", "p50_ms", "p99_ms", "errors")}
            loads_seen = [r["load_1min"] for r in mine]
            print(f"{load:>6} {server:>6} {med['rps']:>8.0f} {med['p50_ms']:>7.2f} "
                  f"{med['p99_ms']:>7.2f} {med['errors']:>6.0f} "
                  f"{min(loads_seen):>4.1f}-{max(loads_seen):<4.1f}")


if __name__ == "__main__":
    main()
