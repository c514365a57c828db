"""`tfcnn serve` as a command: it starts, logs a line per request, and stops cleanly (exit
status 0, promptly) on SIGTERM and SIGINT; bad settings are one line and exit status 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support import run_tfcnn


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("serve-cli") / "tiny.keras"
    build_model("4C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                prepare="mnist", dataset="mnist").save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(model_file: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tfcnn", "serve", str(model_file),
                                "--port", str(port), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tfcnn serve exited early: {process.communicate()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("tfcnn serve did not start within 120 s")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_logs_requests_and_stops_cleanly_on_a_signal(model_file, signum):
    process, url = start(model_file, "--name", "tiny")
    try:
        assert httpx.get(f"{url}/v1/models/tiny").status_code == 200
        assert httpx.post(f"{url}/v1/models/tiny:predict", content=b"{").status_code == 400
        sent = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert time.monotonic() - sent < 10
    assert "GET /v1/models/tiny 200" in err and "POST /v1/models/tiny:predict 400" in err
    assert f"page {url}/" in err and signal.Signals(signum).name in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_port_in_use_is_one_line_and_status_2(model_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_tfcnn("serve", str(model_file), "--port", str(port), timeout=120)
    assert busy.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr
    missing = run_tfcnn("serve", str(model_file.parent / "missing"), "--port", "0")
    assert missing.returncode == 2 and "no such run directory" in missing.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ({"max_body_mb": 0}, "--max-body-mb"), ({"batch_window_ms": -1}, "--batch-window-ms"),
    ({"name": "a/b"}, "--name")])
def test_bad_settings_are_refused_before_anything_starts(model_file, setting, message):
    import tfcnn
    from tfcnn.core.errors import ConfigError
    from tfcnn.serve.app import run_server

    with pytest.raises(ConfigError, match=message):
        run_server(tfcnn.load(model_file), host="127.0.0.1", port=free_port(),
                   **{"name": None, **setting})
