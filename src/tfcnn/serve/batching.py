"""Server-side micro-batching: concurrent requests share one model call.

Each request puts its images (an N×H×W×C array) on an asyncio queue and awaits a future.
One worker task runs the model, one call at a time, in a dedicated thread, and hands each
request its own rows. It never waits for a batch to fill: when the model is idle, what is
waiting runs at once (a lone client pays nothing for batching), and what gathers while
the model runs makes the next call, up to `max_batch` images (the "zero queue delay"
setting of TensorFlow Serving's and Triton's batchers). Under load the queue fills while
the model runs, so batches grow with the number of clients and so does throughput.

Before issue 25 the worker waited up to `window_ms` (2 ms) for more requests after the
first: a lone client's median was 3.5 ms, against 3.1 ms for a plain server calling Keras
per request and 0.7 ms now; under 32 clients the batches are smaller (15 images a call
against 23) and throughput is the same or better, 1,943 against 1,558 requests/s
(docs/benchmarks.md, "Serving: a lone client"). The event loop never runs the model itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("tfcnn.serve")


class BatcherClosed(RuntimeError):
    """The server is shutting down: the request was not run."""


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    requests: int = 0  # requests run
    batches: int = 0  # model calls
    images: int = 0  # images run


@dataclass
class MicroBatcher:
    """Batches `predict(images) -> rows` calls from concurrent coroutines.

    `predict` takes a float32 N×H×W×C array and returns N rows; it runs in one worker
    thread, one call at a time (a model call already uses every core). Use `start()` and
    `close()` from the event loop that calls `run()`.

    `window_ms` is kept so that existing callers (`--batch-window-ms`, `/info`) still work;
    it no longer delays anything (see the module's docstring).
    """

    predict: Callable[[np.ndarray], np.ndarray]
    max_batch: int = 64
    window_ms: float = 2.0
    stats: BatchStats = field(default_factory=BatchStats)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch: expected a positive integer, got {self.max_batch}")
        if self.window_ms < 0:
            raise ValueError(f"window_ms: expected >= 0, got {self.window_ms}")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Pending | None = None  # a request that did not fit the last batch
        self._closed = False

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfcnn-infer")
        self._closed = False
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Stop taking requests, let the batch in flight finish, fail the ones still queued."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            left = [self._carry] if self._carry else []
            while not self._queue.empty():
                left.append(self._queue.get_nowait())
            for pending in left:
                if not pending.future.done():
                    pending.future.set_exception(BatcherClosed("server shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def run(self, images: np.ndarray) -> np.ndarray:
        """The model's rows for `images` (N×H×W×C float32), computed in some batch."""
        if self._closed or self._queue is None:
            raise BatcherClosed("server shutting down")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(images, future))
        return await future

    def _take(self, first: _Pending) -> list[_Pending]:
        """`first` and what is already waiting behind it, up to `max_batch` images, without
        waiting for more."""
        assert self._queue is not None
        batch, count = [first], len(first.images)
        while count < self.max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            # Requests are never split: one that would take the batch over max_batch opens
            # the next batch instead (a request larger than max_batch runs alone).
            if count + len(item.images) > self.max_batch:
                self._carry = item
                break
            batch.append(item)
            count += len(item.images)
        return batch

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first, self._carry = self._carry, None
            # The model is idle here: run what is waiting now (the first request wakes
            # the worker; those that came while the last call ran are already queued).
            batch = self._take(first or await self._queue.get())
            live = [p for p in batch if not p.future.done()]  # skip clients that left
            if not live:
                continue
            images = live[0].images if len(live) == 1 else np.concatenate(
                [p.images for p in live])
            try:
                rows = await loop.run_in_executor(self._executor, self.predict, images)
            except asyncio.CancelledError:
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed("server shutting down"))
                raise
            except Exception as exc:  # a model failure fails this batch, not the server
                log.exception("model call failed on a batch of %d", len(images))
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.requests += len(live)
            self.stats.images += len(images)
            start = 0
            for p in live:
                end = start + len(p.images)
                if not p.future.done():
                    p.future.set_result(rows[start:end])
                start = end
