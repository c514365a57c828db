"""A naive peer for the serving benchmarks: a plain FastAPI + uvicorn server that calls the
Keras model once per request (no batching, no LiteRT, no fast lane), answering TensorFlow
Serving's v1 `:predict` as `tfcnn serve` does. benchmarks/serve_vs_peer.py starts it.

The call is Keras's `predict_on_batch`, which runs the compiled predict function: 0.9 ms
for one 28×28 image of the tutorial network, where the eager `model(x)` took 6.0 ms
(medians of 200 calls, AMD EPYC, 2 cores, 2026-12-02): the peer is naive, not slow.

    python benchmarks/serve_peer.py MODEL_OR_RUN_DIR [--port 8001]

`GET /ready` answers once the model is loaded and has run once. The handler is a plain
`def`, which FastAPI runs in its thread pool: the usual way to serve a blocking model call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def make_app(model_path: str) -> Any:
    from fastapi import FastAPI

    from tfcnn.models.loader import load_checked_model

    source = Path(model_path)
    model = load_checked_model(source / "model.keras" if source.is_dir() else source)
    shape = tuple(int(n) for n in model.image_shape)
    model.predict_on_batch(np.zeros((1, *shape), np.float32))  # compiled and warm
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v1/models/{name}:predict")
    def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
        x = np.asarray(body["instances"], np.float32)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        logits = np.asarray(model.predict_on_batch(x), np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return {"predictions": (exp / exp.sum(axis=1, keepdims=True)).tolist()}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a tfcnn model file or run directory")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
