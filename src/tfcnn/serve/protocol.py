"""The HTTP/1.1 connection the server runs: uvicorn's httptools protocol with read deadlines
and a shutdown that does not wait for stalled clients.

uvicorn itself gives a request unlimited time: a client that connects and sends nothing, or
half its headers, or half its body, holds the connection forever, and at shutdown a request
still waiting for its body delays the exit until the graceful-shutdown timeout (10 s) and
then gets a 500. Here:

- the request line and headers must arrive within `header_timeout` seconds of the
  connection (or of the request's first byte): else 408 and the connection closes;
- the body must arrive within `body_timeout` seconds of the headers: else 408 (the route
  waiting for it sees a client disconnect, which is not logged as an error);
- at shutdown, a request still sending its body gets a 503 and the connection closes at
  once; requests whose body has arrived finish normally.

httptools (C) parses requests several times faster than h11 (pure Python): it is the
parser `tfcnn serve` uses (docs/benchmarks.md, "Serving speed").

uvicorn has no public setting for these deadlines (only the keep-alive timeout), so this is
the one module that subclasses its private `HttpToolsProtocol`; tests/test_serve_protocol.py
fails, naming what moved, when a uvicorn release changes what it relies on, and
pyproject.toml pins the releases it was checked with.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class DeadlineProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the deadlines above (set by `protocol_class`)."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, status: int, reason: str, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, status, reason, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, status: int, reason: str, message: str) -> None:
        self._deadline = None
        self._refuse(status, reason, message)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer `status` unless a response has begun, and close the connection."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_raw_response(status, reason, message))
        if cycle is not None and not cycle.response_complete:
            # The route still running sees a disconnect; what it sends next is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers()

    def _arm_headers(self) -> None:
        self._arm(self.header_timeout, 408, "Request Timeout",
                  f"request headers not received within {self.header_timeout:g} s")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_headers()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, 408, "Request Timeout",
                  f"request body not received within {self.body_timeout:g} s")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._deadline is None:
            self._arm_headers()  # uvicorn's keep-alive timeout closes it sooner when idle

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()
            self._refuse(503, "Service Unavailable", "server shutting down")
            return
        super().shutdown()


def protocol_class(header_timeout: float = HEADER_TIMEOUT,
                   body_timeout: float = BODY_TIMEOUT) -> type[DeadlineProtocol]:
    """A `DeadlineProtocol` with these deadlines, for `uvicorn.Config(http=...)`."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
