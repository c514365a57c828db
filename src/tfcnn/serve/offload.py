"""Decoding request bodies without blocking the event loop: small bodies inline, large ones
in a worker process.

A thread would not do: orjson, pydantic-core and numpy's list conversion hold the GIL for
the whole call (a 5.7 MiB JSON body: ~300 ms in `orjson.loads` alone on this 2-core
machine), so every other client would wait as long. A body of `LARGE_BODY` bytes or more
is decoded by a separate process (spawned, not forked: the server holds TensorFlow's
threads), one body at a time, so four hostile clients cost one decode's memory, and the
event loop keeps answering (`tests/test_serve_hostile.py`). One 28×28 image's JSON is
~6 KB: inline, where a process round trip (~1 ms) would cost more than the decode.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pydantic import ValidationError

from tfcnn.serve.http import ApiError, describe_validation_errors

T = TypeVar("T")
LARGE_BODY = 256 * 1024  # ~45 images of 28×28 as JSON; the loop holds the GIL ~10-20 ms


def guarded(function: Callable[..., T], *args: Any) -> tuple[bool, Any]:
    """Run `function` in the worker: (True, result) or (False, (status, message)), since
    the 400s must cross the process boundary as plain data."""
    try:
        return True, function(*args)
    except ApiError as exc:
        return False, (exc.status_code, str(exc.detail))
    except ValidationError as exc:
        return False, (400, describe_validation_errors(exc.errors(include_url=False)))


class Offloader:
    """`await run(size, function, *args)`: `function(*args)` inline when `size` is small,
    else in the worker process. `function` must be a module-level function."""

    def __init__(self, large: int = LARGE_BODY) -> None:
        self.large = large
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, size: int, function: Callable[..., T], *args: Any) -> T:
        if size < self.large:
            return function(*args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            ok, value = await loop.run_in_executor(self._pool, guarded, function, *args)
        except BrokenProcessPool as exc:  # the worker died (e.g. out of memory): a new one
            self._pool = None
            raise ApiError(503, "request too large to decode (the decoder stopped)") from exc
        if not ok:
            raise ApiError(*value)
        return value

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
