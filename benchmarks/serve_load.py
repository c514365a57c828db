"""Load benchmark for `tfcnn serve`: concurrent clients send predict requests; report
throughput, latency percentiles, errors, accuracy and the server's batch sizes.

    python benchmarks/serve_load.py RUN_DIR|MODEL [--clients 32] [--requests 10000]
        [--api v1|v2|upload] [--data-dir ../shared/datasets]

Starts `tfcnn serve` on a free port of 127.0.0.1 in a subprocess (or uses `--url` of a
running server), sends MNIST test images (random images when the data set is not found),
one image per request, over keep-alive connections from `--clients` threads, and checks
every answer: any non-200 status or unreadable body counts as an error. `--clients 1,8,32`
runs one round per count, to show throughput growing with load (server-side batching).
The clients are threads of this process and share the machine with the server: the
figures are for the pair, on this machine, not the server alone.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image


def load_images(data_dir: str | None, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """`count` MNIST test images as floats in [0, 1] and their labels, or random images."""
    try:
        from tfcnn.data.locate import load_dataset

        data = load_dataset("mnist", data_dir, download=False, progress=False)
        return data.x_test[:count].astype(np.float32) / 255, data.y_test[:count]
    except Exception as exc:  # no data set here: the load is the same, accuracy unknown
        print(f"(MNIST not found: {exc}; sending random images)", file=sys.stderr)
        return np.random.default_rng(0).random((count, 28, 28), np.float32), None


def encode(api: str, name: str, image: np.ndarray) -> tuple[str, bytes, dict[str, str]]:
    """Path, body and headers of one predict request for `image` (28×28 in [0, 1])."""
    if api == "v1":
        body = json.dumps({"instances": [np.round(image, 4).tolist()]}).encode()
        return f"/v1/models/{name}:predict", body, {"Content-Type": "application/json"}
    if api == "v2":  # binary tensor extension, as tritonclient sends by default
        data = image.astype("<f4").tobytes()
        header = json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                         "datatype": "FP32",
                                         "parameters": {"binary_data_size": len(data)}}],
                             "outputs": [{"name": "probabilities"}]}).encode()
        return (f"/v2/models/{name}/infer", header + data,
                {"Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/octet-stream"})
    png = io.BytesIO()
    Image.fromarray((255 * (1 - image)).astype(np.uint8)).save(png, "PNG")  # ink on paper
    boundary = "tfcnnbenchmarkboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += png.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def label_of(api: str, answer: dict) -> int:
    if api == "v1":
        return int(np.argmax(answer["predictions"][0]))
    if api == "v2":
        return int(np.argmax(answer["outputs"][0]["data"]))
    return int(answer["index"])


def run_round(host: str, port: int, requests: list[tuple[str, bytes, dict[str, str]]],
              labels: np.ndarray | None, api: str, clients: int, total: int) -> dict:
    latencies = np.zeros(total)
    correct = np.zeros(total, dtype=bool)
    errors: list[str] = []
    next_index = iter(range(total))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            path, body, headers = requests[i % len(requests)]
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
                latencies[i] = time.perf_counter() - start
                if response.status != 200:
                    errors.append(f"{response.status} {text[:200]!r}")
                    continue
                if labels is not None:
                    correct[i] = label_of(api, json.loads(text)) == labels[i % len(labels)]
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                latencies[i] = time.perf_counter() - start
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = latencies * 1000
    return {"clients": clients, "requests": total, "errors": len(errors),
            "first_errors": errors[:3], "seconds": round(elapsed, 2),
            "throughput_rps": round(total / elapsed, 1),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                           "p90": round(float(np.percentile(ms, 90)), 2),
                           "p99": round(float(np.percentile(ms, 99)), 2),
                           "max": round(float(ms.max()), 2)},
            "accuracy": None if labels is None else round(float(correct.mean()), 4)}


def get_json(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(model: str, log_path: Path, window_ms: float | None,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`tfcnn serve MODEL` on a free port, once it answers; `env`: its environment (default:
    this process's)."""
    with socket.socket() as probe:  # a free port (released just before the server binds it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tfcnn", "serve", model, "--port", str(port)]
    if window_ms is not None:
        command += ["--batch-window-ms", str(window_ms)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=log_path.open("w"), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tfcnn serve exited with {process.returncode}; see {log_path}")
        try:
            get_json("127.0.0.1", port, "/v2/health/ready")
            return process, port
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("tfcnn serve did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="RUN_DIR|MODEL to serve (or give --url)")
    parser.add_argument("--url", help="a running tfcnn serve, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", default="32",
                        help="concurrent clients; a comma list runs one round each")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per round")
    parser.add_argument("--api", choices=("v1", "v2", "upload"), default="v1",
                        help="v1 :predict JSON (default), v2 infer binary, or /predict PNG")
    parser.add_argument("--data-dir", default=os.environ.get("TFCNN_DATA_DIR"))
    parser.add_argument("--batch-window-ms", type=float, help="passed to tfcnn serve")
    parser.add_argument("--log", default="serve_load.log", help="the server's log file")
    args = parser.parse_args()
    if not args.url and not args.model:
        parser.error("give RUN_DIR|MODEL or --url")

    process = None
    if args.url:
        parts = urllib.parse.urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
    else:
        host = "127.0.0.1"
        process, port = start_server(args.model, Path(args.log), args.batch_window_ms)
    try:
        info = get_json(host, port, "/info")
        images, labels = load_images(args.data_dir, 2000)
        requests = [encode(args.api, info["name"], image) for image in images]
        run_round(host, port, requests, labels, args.api, 4, 200)  # warm-up, not reported
        results = []
        for clients in (int(n) for n in args.clients.split(",")):
            before = get_json(host, port, "/info")["batching"]
            result = run_round(host, port, requests, labels, args.api, clients,
                               args.requests)
            after = get_json(host, port, "/info")["batching"]
            batches = after["batches"] - before["batches"]
            result["mean_batch"] = round((after["images"] - before["images"])
                                         / max(batches, 1), 2)
            result["api"] = args.api
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    print(f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'batch':>6} {'accuracy':>8}")
    for r in results:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        print(f"{r['clients']:>7} {r['throughput_rps']:>8} {r['latency_ms']['p50']:>8} "
              f"{r['latency_ms']['p99']:>8} {r['errors']:>6} {r['mean_batch']:>6} {acc:>8}")


if __name__ == "__main__":
    main()
