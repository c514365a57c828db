"""Large JSON bodies to `POST /explain` against everyone else (issue 25): while `--clients`
clients keep sending ~5.7 MB `/explain` bodies, one client polls `/v2/health/live` and one
sends single-image v1 `:predict` requests, one after the other (20 ms apart); their
latencies say whether parsing the large bodies holds the event loop.

    python benchmarks/serve_explain_bodies.py RUN_DIR|MODEL [--clients 4] [--seconds 10]
        [--rounds 3] [--mb 5.7] [--data-dir ../shared/datasets]

Starts `tfcnn serve` on a free port (as benchmarks/serve_load.py does; run it with another
tree's `src` on PYTHONPATH to measure that tree). Each large body is one image `{"image":
...}` of random 0s and 1s (valid pixels, ~1.9 million of them: the costliest kind of body to
parse per byte), wide enough to weigh `--mb` MB: the server must parse all of it before it
can refuse its shape (400, expected).
Prints one JSON line per round and the medians over rounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import encode, get_json, load_images, start_server  # noqa: E402

PAUSE = 0.02  # seconds between two requests of the health and v1 clients


def large_body(megabytes: float, seed: int = 0) -> bytes:
    """`{"image": N×N numbers}` of about `megabytes` MB (10**6 bytes)."""
    side = int((megabytes * 1e6 / 3) ** 0.5)  # "0, " or "1, ": 3 bytes a value
    values = np.random.default_rng(seed).integers(0, 2, (side, side))
    return json.dumps({"image": values.tolist()}).encode()


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}


def loop_requests(port: int, method: str, path: str, body: bytes | None,
                  headers: dict[str, str], pause: float, until: float, times: list[float],
                  statuses: list[int]) -> None:
    """Send the same request one after the other on one keep-alive connection, `pause`
    seconds apart."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - start)
            statuses.append(response.status)
            time.sleep(pause)
    finally:
        conn.close()


def run_round(port: int, body: bytes, predict: tuple[str, bytes, dict[str, str]],
              clients: int, seconds: float) -> dict:
    until = time.perf_counter() + seconds
    results: dict[str, tuple[list[float], list[int]]] = {
        key: ([], []) for key in ("explain", "health", "v1")}
    json_headers = {"Content-Type": "application/json"}
    # The two small clients pause between requests, so that they sample the server at
    # times unrelated to the large bodies (a client polling flat out would mostly sample
    # the moments when the loop is free, and its median would hide the stalls).
    jobs = [("explain", "POST", "/explain", body, json_headers, 0.0)] * clients + [
        ("health", "GET", "/v2/health/live", None, {}, PAUSE),
        ("v1", "POST", predict[0], predict[1], predict[2], PAUSE)]
    threads = [threading.Thread(target=loop_requests, args=(
        port, method, path, data, headers, pause, until, *results[key]))
        for key, method, path, data, headers, pause in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    explain_times, explain_statuses = results["explain"]
    unexpected = [s for key in ("health", "v1") for s in results[key][1] if s != 200]
    return {"explain_bodies": len(explain_times),
            "explain_statuses": sorted(set(explain_statuses)),
            "explain_ms": percentiles(explain_times),
            "health_ms": percentiles(results["health"][0]),
            "v1_ms": percentiles(results["v1"][0]),
            "errors": len(unexpected), "load_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="RUN_DIR|MODEL to serve")
    parser.add_argument("--clients", type=int, default=4, help="clients sending large bodies")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=float, default=5.7, help="size of one large body")
    parser.add_argument("--data-dir", default=os.environ.get("TFCNN_DATA_DIR"))
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir())
                                             / "tfcnn-serve_explain_bodies.log"))
    args = parser.parse_args()

    body = large_body(args.mb)
    print(f"large body: {len(body) / 1e6:.2f} MB", flush=True)
    images, _ = load_images(args.data_dir, 1)
    process, port = start_server(args.model, Path(args.log), None)
    rows = []
    try:
        name = get_json("127.0.0.1", port, "/info")["name"]
        predict = encode("v1", name, images[0])
        run_round(port, body, predict, 1, 2.0)  # warm-up (and the decoder's start)
        for round_ in range(args.rounds):
            row = run_round(port, body, predict, args.clients, args.seconds)
            row["round"] = round_ + 1
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        process.terminate()
        process.wait(30)
    print(f"medians of {args.rounds} rounds, {args.clients} clients × {len(body) / 1e6:.1f} MB:")
    for key in ("health_ms", "v1_ms", "explain_ms"):
        medians = {stat: statistics.median(r[key][stat] for r in rows)
                   for stat in ("p50", "p99", "max")}
        print(f"  {key[:-3]:>8}: p50 {medians['p50']:.1f} ms  p99 {medians['p99']:.1f} ms  "
              f"max {medians['max']:.1f} ms")
    print(f"  large bodies answered per round: "
          f"{statistics.median(r['explain_bodies'] for r in rows):.0f}")


if __name__ == "__main__":
    main()
