"""Serving speed measured by an external load tool (`hey` or `wrk`, Debian packages), so the
client is not the bottleneck: 32 keep-alive clients send one v1 JSON `:predict` request each
at a time (one 28×28 MNIST test image). hey sends 10,000 requests a round (10,016: it gives
each client the same count); wrk, which runs for a time, runs 5 s (10,000 requests at
2,000 req/s).

    python benchmarks/serve_wrk.py RUN_DIR|MODEL [--tool hey|wrk|both] [--rounds 3]
        [--clients 32] [--requests 10000] [--data-dir ../shared/datasets]

Starts `tfcnn serve` on a free port (as benchmarks/serve_load.py does), warms it up, then
runs the rounds and prints one JSON line per round and a table of medians: requests/s,
p50/p99 latency, errors (any non-200 or socket error), and the CPU seconds used by the
server process and by the load tool (both on this machine), per 1,000 requests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import get_json, load_images, start_server  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("WRK_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seconds(text: str) -> float:
    """wrk's durations ("812.00us", "3.21ms", "1.02s") in seconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_hey(url: str, body: Path, clients: int, requests: int,
            rate: float | None = None) -> dict:
    """hey's figures for `requests` POSTs of `body` from `clients` clients; `rate`: each
    client sends at most that many requests per second (hey -q), else flat out."""
    requests = -(-requests // clients) * clients  # hey gives each client n / c requests
    paced = ["-q", str(rate)] if rate else []
    out = subprocess.run(["hey", "-n", str(requests), "-c", str(clients), *paced,
                          "-m", "POST", "-T", "application/json", "-D", str(body), url],
                         capture_output=True, text=True, check=True).stdout
    # Errors: the non-200 answers plus the socket errors hey lists.
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    _, _, error_part = out.partition("Error distribution:")
    failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", error_part, re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": 1000 * float(re.search(r"50% in ([\d.]+) secs", out).group(1)),
            "p99_ms": 1000 * float(re.search(r"99% in ([\d.]+) secs", out).group(1)),
            "errors": sum(codes.values()) - codes.get(200, 0) + failed,
            "requests": sum(codes.values())}


def run_wrk(url: str, body: Path, clients: int, requests: int) -> dict:
    # wrk runs for a duration, not a count: the time 10,000 requests take at 2,000 req/s.
    duration = max(2, round(requests / 2000))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {**os.environ, "WRK_BODY": str(body)}
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{duration}s", "--latency",
                              "-s", script.name, url], capture_output=True, text=True,
                             check=True, env=env).stdout
    finally:
        os.unlink(script.name)
    try:
        return _read_wrk(out)
    except (AttributeError, ValueError) as exc:  # a line not found or not a number
        raise RuntimeError(f"cannot read wrk's output ({exc}):\n{out}") from exc


def _read_wrk(out: str) -> dict:
    done = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": 1000 * seconds(re.search(r"50%\s+(\S+)", out).group(1)),
            "p99_ms": 1000 * seconds(re.search(r"99%\s+(\S+)", out).group(1)),
            "errors": errors, "requests": done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="RUN_DIR|MODEL to serve")
    parser.add_argument("--tool", choices=("hey", "wrk", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--data-dir", default=os.environ.get("TFCNN_DATA_DIR"))
    parser.add_argument("--batch-window-ms", type=float, help="passed to tfcnn serve")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "tfcnn-serve_wrk.log"),
                        help="the server's log file (default: in the temporary folder)")
    args = parser.parse_args()

    images, _ = load_images(args.data_dir, 1)
    body = Path(tempfile.mkstemp(suffix=".json")[1])
    body.write_text(json.dumps({"instances": [[[round(float(v), 4) for v in row]
                                               for row in images[0]]]}))
    process, port = start_server(args.model, Path(args.log), args.batch_window_ms)
    tools = ("hey", "wrk") if args.tool == "both" else (args.tool,)
    rows: dict[str, list[dict]] = {tool: [] for tool in tools}
    try:
        name = get_json("127.0.0.1", port, "/info")["name"]
        url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
        run_hey(url, body, args.clients, 2000)  # warm-up, not reported
        for round_ in range(args.rounds):
            for tool in tools:
                server_before, client_before = cpu_seconds(process.pid), children_cpu()
                load = os.getloadavg()[0]
                start = time.perf_counter()
                result = (run_hey if tool == "hey" else run_wrk)(url, body, args.clients,
                                                                  args.requests)
                wall = time.perf_counter() - start
                done = result["requests"]
                result.update(tool=tool, round=round_ + 1, load_1min=load,
                              wall_s=round(wall, 2),
                              server_cpu_s_per_1k=round(
                                  1000 * (cpu_seconds(process.pid) - server_before) / done, 3),
                              client_cpu_s_per_1k=round(
                                  1000 * (children_cpu() - client_before) / done, 3))
                rows[tool].append(result)
                print(json.dumps(result), flush=True)
    finally:
        process.terminate()
        process.wait(30)
        body.unlink()
    print(f"{'tool':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'server CPU s/1k':>15} {'client CPU s/1k':>15}   (medians of {args.rounds})")
    for tool, results in rows.items():
        med = {key: statistics.median(r[key] for r in results)
               for key in ("rps", "p50_ms", "p99_ms", "errors", "server_cpu_s_per_1k",
                           "client_cpu_s_per_1k")}
        print(f"{tool:>5} {med['rps']:>8.0f} {med['p50_ms']:>7.2f} {med['p99_ms']:>7.2f} "
              f"{med['errors']:>6.0f} {med['server_cpu_s_per_1k']:>15.3f} "
              f"{med['client_cpu_s_per_1k']:>15.3f}")


if __name__ == "__main__":
    main()
