"""`tfcnn serve`: the FastAPI app (the drawing page, `/predict`, `/info` and the two model
serving APIs) and running it with uvicorn until SIGINT or SIGTERM.

`create_app` builds the app for one model; `BackgroundServer` runs an app on a socket in a
thread (`run_server` uses it, and so do the tests); `run_server` is what the CLI calls.
The server is uvicorn with httptools and (where installed) uvloop, behind
`serve.protocol`'s read deadlines; what makes it fast is measured in docs/benchmarks.md
("Serving speed").
The docs pages (`/docs`, `/redoc`) use Swagger UI and ReDoc files shipped in a Python
package (fastapi-offline), like the drawing page's files: nothing is fetched from a CDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from tfcnn import __version__
from tfcnn.core.errors import ConfigError
from tfcnn.serve import kserve, tfserving
from tfcnn.serve.batching import MicroBatcher
from tfcnn.serve.fastlane import PredictLane
from tfcnn.serve.http import (
    ERRORS,
    AccessLogMiddleware,
    BodyLimitMiddleware,
    install_error_handlers,
    json_response,
)
from tfcnn.serve.model import (
    ServedModel,
    check_name,
    default_name,
    png_data_url,
    serve_model,
)
from tfcnn.serve.offload import Offloader
from tfcnn.serve.protocol import BODY_TIMEOUT, HEADER_TIMEOUT, protocol_class
from tfcnn.serve.schemas import InferRequest, ModelInfo, PredictRequest, UploadAnswer

log = logging.getLogger("tfcnn.serve")

MAX_BODY_MB = 10.0
# Accepted for compatibility: the batcher no longer waits (serve/batching.py; a lone
# request runs at once, what gathers while the model runs makes the next batch).
BATCH_WINDOW_MS = 2.0
MAX_BATCH = 64  # images per model call: past this, batching gains little on a CPU


RouterFactory = Callable[[ServedModel], APIRouter]


def default_routers(offloader: Offloader | None = None) -> list[RouterFactory]:
    """The routers added to every app beyond the prediction APIs: `POST /explain` (its
    large JSON bodies parsed by `offloader`, the app's own, as /v1's are)."""
    from tfcnn.serve import explain_route

    return [lambda served: explain_route.router(served, offloader=offloader)]


def create_app(model: Any, name: str, *, max_body_bytes: int = int(MAX_BODY_MB * 2**20),
               batch_window_ms: float = BATCH_WINDOW_MS, max_batch: int = MAX_BATCH,
               extra_routers: Iterable[RouterFactory] | None = None) -> FastAPI:
    """The app serving `model` as `name`: a `TrainedModel` (`tfcnn.load(...)`), or a
    `ServedModel` (which keeps its own name). `extra_routers` (default: `default_routers()`)
    are called with the `ServedModel` and their routes added."""
    served = model if isinstance(model, ServedModel) else serve_model(model, name)
    batcher = MicroBatcher(served.answer_rows, max_batch=max_batch,
                           window_ms=batch_window_ms)
    offloader = Offloader()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            offloader.close()
            await batcher.close()

    app = FastAPIOffline(title="tfcnn serve", version=__version__, lifespan=lifespan,
                         description=f"Model **{served.name}**: {served.dataset or 'images'}, "
                                     f"{served.shape_text()} inputs in [0, 1], "
                                     f"{served.n_classes} classes.")
    app.state.served, app.state.batcher = served, batcher
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    # The hot path, v1 :predict, skips FastAPI's routing (serve.fastlane).
    app.add_middleware(PredictLane, served=served, batcher=batcher, offloader=offloader,
                       max_body_bytes=max_body_bytes)
    app.add_middleware(AccessLogMiddleware)  # added last: outermost, so it sees every answer
    static = files("tfcnn.serve") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(packages=[("tfcnn.serve", "static")]), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        # The page loads only its own files: the policy makes a stray CDN link fail loudly.
        return HTMLResponse(page, headers={"Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'")})

    @app.get("/info", response_model=ModelInfo, tags=["tfcnn"], summary="The served model")
    async def info() -> dict[str, Any]:
        stats = batcher.stats
        return {"name": served.name, "version": served.version, "dataset": served.dataset,
                "class_names": list(served.class_names),
                "image_shape": list(served.image_shape),
                "preprocessing": served.preprocessing, "max_body_bytes": max_body_bytes,
                "runtime": served.runtime,
                "batching": {"max_batch": batcher.max_batch, "window_ms": batcher.window_ms,
                             "requests": stats.requests, "batches": stats.batches,
                             "images": stats.images}}

    @app.post("/predict", response_model=UploadAnswer, response_model_exclude_none=True,
              responses=ERRORS, tags=["tfcnn"], summary="Predict an uploaded image",
              description="The image file (PNG, JPEG, BMP, GIF or WebP) is prepared as "
                          "`tfcnn predict` prepares it; the answer is its `--json` entry.")
    async def predict(file: Annotated[UploadFile, File(description="the image file")],
                      top_k: Annotated[int, Query(ge=1, le=1000, description="classes to "
                                                  "list, most likely first")] = 3,
                      include_image: Annotated[bool, Query(description="add the model's "
                                                           "input as a PNG data URL")] = False
                      ) -> Response:
        from tfcnn.predict.answers import prediction

        filename = file.filename or "upload"
        data = await file.read()
        # Decoding and the MNIST-style preprocessing are numpy/Pillow work: off the loop,
        # at most `DECODE_SLOTS` at once (an image too large to decode is a 413).
        image = await asyncio.to_thread(served.prepare_upload, data, filename)
        probs, unknown = served.split(await batcher.run(image[None]))
        result = prediction(filename, probs[0], list(served.class_names), top_k,
                            bool(unknown[0]))
        if include_image:
            result["image"] = png_data_url(image)
        return json_response(result)

    app.include_router(tfserving.router(served, batcher, max_body_bytes, offloader))
    app.include_router(kserve.router(served, batcher, max_body_bytes, offloader))
    for make_router in default_routers(offloader) if extra_routers is None else extra_routers:
        app.include_router(make_router(served))

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = base_openapi()  # generated once, then cached by FastAPI
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # The bodies the routes read by hand (any Content-Type; JSON then binary tensors)
        # have no parameter for FastAPI to derive them from: add their schemas.
        for model in (PredictRequest, InferRequest):
            if model.__name__ not in components:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or a `ConfigError`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"--host {host}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class BackgroundServer:
    """uvicorn serving `app` in a thread: `start()` returns once it answers; `stop()` asks
    it to finish the requests in flight and waits. Also a context manager."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                 shutdown_timeout: float = 10.0, header_timeout: float = HEADER_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        import uvicorn

        self.socket = bind_socket(host, port)
        bound = self.socket.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        config = uvicorn.Config(app, loop=_event_loop(), lifespan="on",
                                http=protocol_class(header_timeout, body_timeout),
                                access_log=False, log_config=None, timeout_keep_alive=5,
                                timeout_graceful_shutdown=shutdown_timeout)
        self.server = uvicorn.Server(config)
        # uvicorn installs no signal handlers outside the main thread: the caller decides.
        self.thread = threading.Thread(target=self.server.run, name="tfcnn-serve",
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.socket.close()

    def wait(self) -> None:
        # Short joins, so the main thread gets to run Python signal handlers.
        while self.thread.is_alive():
            self.thread.join(0.2)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _event_loop() -> str:
    """uvloop where it is installed (Linux and macOS), else asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.set_name("tfcnn-serve")
    for name, level in (("tfcnn.serve", logging.INFO), ("uvicorn.error", logging.WARNING)):
        logger = logging.getLogger(name)
        if not any(h.get_name() == "tfcnn-serve" for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def check_server_options(max_body_mb: float, batch_window_ms: float) -> None:
    """The server's limits are usable (checked before the model loads)."""
    if not 0 < max_body_mb <= 4096:
        raise ConfigError(f"--max-body-mb: expected a number in (0, 4096], got {max_body_mb}")
    if not 0 <= batch_window_ms <= 1000:
        raise ConfigError(f"--batch-window-ms: expected 0 to 1000, got {batch_window_ms}")


def run_server(classifier: Any, *, host: str, port: int, name: str | None,
               max_body_mb: float = MAX_BODY_MB, batch_window_ms: float = BATCH_WINDOW_MS
               ) -> None:
    """Serve a `tfcnn.Classifier` (`tfcnn.load(...)`) until SIGINT or SIGTERM, then finish
    the requests in flight."""
    check_server_options(max_body_mb, batch_window_ms)
    model_file = classifier.path
    name = check_name(name or default_name(model_file))
    _log_to_stderr()
    served = serve_model(classifier, name)
    app = create_app(served, served.name, max_body_bytes=int(max_body_mb * 2**20),
                     batch_window_ms=batch_window_ms)
    # TensorFlow and Keras leave millions of long-lived Python objects; a full garbage
    # collection walks them all (~200 ms, every few seconds under load: every client
    # waits). Freezing them takes them out of every later collection.
    gc.collect()
    gc.freeze()
    server = BackgroundServer(app, host, port)

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s: finishing requests in flight, then stopping",
                 signal.Signals(signum).name)
        server.server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        log.info("serving model %r (%s, %d classes) from %s", served.name,
                 served.dataset or "images", served.n_classes, model_file)
        log.info("page %s/  API docs %s/docs  (Ctrl-C to stop)", server.url, server.url)
        server.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
