"""The hot path: TensorFlow Serving `:predict` requests answered by a pure ASGI middleware.

Profiled under 32 clients (cProfile of the server, docs/benchmarks.md "Serving speed"),
FastAPI's routing (matching ~30 routes with path parameters), dependency solving and its
middleware stack cost more per `:predict` request than decoding the JSON and running the
model together. This middleware answers POST /v1/models/NAME[/versions/V]:predict for the
served model itself, with the same functions the FastAPI route uses (`decode_predict`, the
batcher, the same errors), and hands everything else to the app: requests without a
Content-Length, over the body limit or compressed take the documented route, which
handles those cases. The route stays what /openapi.json documents.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from tfcnn.serve.batching import BatcherClosed, MicroBatcher
from tfcnn.serve.http import ApiError, describe_validation_errors
from tfcnn.serve.inputs import UNKNOWN_KEY, decode_predict
from tfcnn.serve.model import ServedModel
from tfcnn.serve.offload import Offloader

log = logging.getLogger("tfcnn.serve")
JSON_HEADERS = [(b"content-type", b"application/json")]


class PredictLane:
    """ASGI middleware: the served model's v1 `:predict`, without FastAPI's routing."""

    def __init__(self, app: ASGIApp, served: ServedModel, batcher: MicroBatcher,
                 offloader: Offloader, max_body_bytes: int) -> None:
        self.app = app
        self.served, self.batcher, self.offloader = served, batcher, offloader
        self.max_body_bytes = max_body_bytes
        base = f"/v1/models/{served.name}"
        self.paths = {f"{base}:predict", f"{base}/versions/{served.version}:predict"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] not in self.paths or not self._plain(scope)):
            await self.app(scope, receive, send)
            return
        raw = await _read(receive)
        if raw is None:  # the client left: nothing to answer, nothing to log as an error
            return
        status, body = await self._answer(raw)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _plain(self, scope: Scope) -> bool:
        """A declared length within the limit, and no Content-Encoding."""
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = int(value) if value.isdigit() else None
            elif key == b"content-encoding" and value.strip().lower() != b"identity":
                return False
        return length is not None and length <= self.max_body_bytes

    async def _answer(self, raw: bytes) -> tuple[int, bytes]:
        try:
            batch, key = await self.offloader.run(len(raw), decode_predict, raw,
                                                  self.served.spec)
            probs, unknown = self.served.split(await self.batcher.run(batch))
            return 200, orjson.dumps({key: probs.tolist(), UNKNOWN_KEY: unknown.tolist()})
        except ApiError as exc:
            return exc.status_code, _error(str(exc.detail))
        except ValidationError as exc:
            return 400, _error(describe_validation_errors(exc.errors(include_url=False)))
        except BatcherClosed as exc:
            return 503, _error(str(exc))
        except Exception as exc:  # a bug: as the app's own handler answers it
            log.exception("internal error on POST %s", "/v1/models/...:predict")
            return 500, _error(f"internal error: {type(exc).__name__}")


async def _read(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected."""
    chunks: list[bytes] = []
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})
