"""HTTP plumbing shared by the serving APIs: errors as `{"error": ...}`, the body-size limit,
reading (and inflating) request bodies, and the one-line-per-request access log.

Every error any route or FastAPI itself raises leaves as JSON with the right 4xx status:
FastAPI's 422 for a body or parameter that fails validation becomes 400 (TensorFlow Serving
and Triton answer bad input with 400), and only a bug gives a 500. The body limit is a pure
ASGI middleware, so that it holds for every route (uploads too) before FastAPI reads
anything: a declared Content-Length over the limit is refused unread, and a body without
one is counted as it streams in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tfcnn.serve.batching import BatcherClosed
from tfcnn.serve.schemas import ErrorResponse

log = logging.getLogger("tfcnn.serve")
access_log = logging.getLogger("tfcnn.serve.access")

# The errors a route documents, so /openapi.json (and the fuzz test) know every answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input: malformed JSON or image, "
                                                  "wrong shape, type or range"},
    404: {"model": ErrorResponse, "description": "No such model or version"},
    413: {"model": ErrorResponse, "description": "Request body over the size limit, or an "
                                                  "image too large to decode"},
}


class ApiError(HTTPException):
    """A request the server refuses: `status` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit:,} bytes")


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def json_response(content: Any) -> Response:
    """A 200 JSON answer serialised by orjson (~1 µs for one row of probabilities, against
    ~15 µs for JSONResponse's json.dumps with its checks): the predict routes' answer."""
    return Response(orjson.dumps(content), media_type="application/json")


RANGE_ERRORS = ("less_than_equal", "greater_than_equal")


def describe_validation_errors(errors: list[Any]) -> str:
    """One line for pydantic's or FastAPI's error list: where, and what was expected."""
    if not errors:
        return "invalid request"
    error = errors[0]
    kind = error.get("type", "")
    loc = list(error.get("loc", ()))
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "invalid JSON")
        offset = f" at offset {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return f"JSON Parse error: {detail}{offset}"
    if loc[:1] in (["body"], ["query"], ["path"], ["header"]):
        loc = loc[1:]
    if kind == "missing" and not loc:
        return "request body is empty: expected a JSON object"
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif str(part).isidentifier():  # not a union branch's tag such as "list[float]"
            where += f".{part}" if where else str(part)
    message = error.get("msg", "invalid value")
    if kind in ("float_type", "finite_number", "less_than_equal", "greater_than_equal",
                "int_type", "bool_type", "string_type", "list_type", "dict_type"):
        message += f" (got {_short(error.get('input'))})"
    if kind in RANGE_ERRORS:
        message += f"; {_range_hint(errors)}"
    # One value can fail several checks (or each branch of a union): count the values.
    others = len({_value_of(e) for e in errors} - {_value_of(error)})
    more = f" (and {others:,} more bad value{'s' if others > 1 else ''})" if others else ""
    return f"{where or 'request'}: {message}{more}"


def hint(high: float) -> str:
    """What to do about pixels outside [0, 1], given the largest one."""
    return "scale 0-255 pixels by 1/255" if 1 < high <= 255 else "expected pixels in [0, 1]"


def _value_of(error: Any) -> tuple[Any, ...]:
    """An error's location up to its last list index: the value, whichever union branch
    (a trailing tag such as "list[...]") reported it."""
    loc = tuple(error.get("loc", ()))
    last = max((i for i, part in enumerate(loc) if isinstance(part, int)), default=None)
    return loc if last is None else loc[:last + 1]


def _range_hint(errors: list[Any]) -> str:
    values = [e.get("input") for e in errors if e.get("type") in RANGE_ERRORS]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return hint(max(numbers, default=0.0))


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe_validation_errors(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def invalid_json(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(400, describe_validation_errors(exc.errors(include_url=False)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(BatcherClosed)
    async def closing(request: Request, exc: BatcherClosed) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client left while sending its request: nothing to answer, nothing broken.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, checked before and while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "Content-Length is not a number")(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, 4 * self.max_bytes)
            await error_response(413, BodyTooLarge(self.max_bytes).detail,
                                 {"Connection": "close"})(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where no route's handler could answer it
            if started:
                raise
            await error_response(413, exc.detail, {"Connection": "close"})(
                scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None when absent, -1 when not a number."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _drain(receive: Receive, budget: int, seconds: float = 5.0) -> None:
    """Read (and drop) a refused body, up to a budget of bytes and time: a client still
    sending it would otherwise see its connection reset instead of reading the 413."""

    async def drain() -> None:
        left = budget
        while left > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(drain(), seconds)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, inflated if its Content-Encoding is gzip or deflate (tritonclient
    can compress), never more than `max_bytes` either way."""
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise ApiError(400, f"unsupported Content-Encoding {encoding!r} (expected gzip, "
                            "deflate or none)")
    # wbits: gzip framing, or zlib framing for "deflate" as HTTP means it.
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid {encoding} data ({exc})") from exc
    if len(body) > max_bytes:
        raise BodyTooLarge(max_bytes)
    return body


class AccessLogMiddleware:
    """One log line per request: client, method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                access_log.info("%s:%s %s %s %s %.1f ms", client[0], client[1],
                                scope["method"], scope["path"], status or "-",
                                1000 * (time.perf_counter() - start))
