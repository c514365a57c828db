"""How long one update of the drawing page's "why?" view takes: `POST /explain` with the
page's own request (a 280×280 canvas PNG of a drawn digit, multipart), against
`POST /predict` with the same PNG, over HTTP to a real server (uvicorn in a thread, as
`tfcnn serve` runs it). Also the parts: decoding and MNIST-style preparation, the one graph
call (prediction, Grad-CAM, feature maps), and encoding the answer's PNGs.

    python benchmarks/explain_live.py RUN_DIR [--requests 50]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import io
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw


def canvas_png() -> bytes:
    """A "4" drawn with a 20 px pen on the page's 280×280 white canvas."""
    image = Image.new("RGB", (280, 280), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(170, 240), (170, 50), (80, 180), (200, 180)], fill="#111", width=20,
              joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"drawing.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def median_ms(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms of this process) per call. On a shared machine the CPU
    time is the fairer figure: the server runs in this process (client included)."""
    call()  # warm
    times = []
    cpu = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), 1000 * (time.process_time() - cpu) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="run directory or .keras file")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    from tfcnn.explain.figures import heat_rgba, map_grid, png_data_url
    from tfcnn.explain.live import LiveExplainer
    from tfcnn.models.trained import TrainedModel
    from tfcnn.serve.app import BackgroundServer, create_app

    model = TrainedModel.load(args.source)
    app = create_app(model, "bench")
    served = app.state.served
    png = canvas_png()
    body, kind = multipart(png)
    gc.collect()
    gc.freeze()  # as run_server does
    with BackgroundServer(app) as server:
        address = urlsplit(server.url)
        connection = http.client.HTTPConnection(address.hostname, address.port)

        def post(path: str) -> None:
            connection.request("POST", path, body, {"Content-Type": kind})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status

        results = {"predict": median_ms(lambda: post("/predict?top_k=10&include_image=true"),
                                        args.requests),
                   "explain": median_ms(lambda: post("/explain?top_k=10"), args.requests)}
        connection.close()
    image = served.prepare_upload(png, "drawing.png")
    live = LiveExplainer(model)
    result = live.explain(image)
    results["prepare (decode + MNIST-style)"] = median_ms(
        lambda: served.prepare_upload(png, "drawing.png"), args.requests)
    results["graph call (prediction, Grad-CAM, maps)"] = median_ms(
        lambda: live.explain(image), args.requests)
    results["PNG encoding (overlay, maps)"] = median_ms(
        lambda: [png_data_url(heat_rgba(result.heatmap))]
        + [png_data_url(map_grid(m)) for _, m in result.feature_maps], args.requests)
    for name, (wall, cpu) in results.items():
        print(f"{name}: {wall:.1f} ms wall (median of {args.requests}), {cpu:.1f} ms CPU")


if __name__ == "__main__":
    main()
