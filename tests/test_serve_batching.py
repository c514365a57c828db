"""tfcnn.serve.batching: the micro-batcher on its own, with a fake model that counts calls."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from tfcnn.serve.batching import BatcherClosed, MicroBatcher


class FakeModel:
    """Row i of the answer is the sum of image i's pixels; records each call's batch size."""

    def __init__(self, seconds: float = 0.01, fail_on: float | None = None) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.seconds = seconds
        self.fail_on = fail_on

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)  # a model call takes time: requests queue meanwhile
        if self.fail_on is not None and (batch == self.fail_on).any():
            raise RuntimeError("model failed")
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def image(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2, 2, 1), value, np.float32)


async def _run_all(batcher: MicroBatcher, inputs: list[np.ndarray]) -> list:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.run(x) for x in inputs), return_exceptions=True)
    finally:
        await batcher.close()


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, window_ms=5)
    inputs = [image(i, n=1 + i % 3) for i in range(40)]
    results = asyncio.run(_run_all(batcher, inputs))
    for x, rows in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(rows, x.reshape(len(x), -1).sum(axis=1, keepdims=True))
    assert sum(model.sizes) == sum(len(x) for x in inputs)
    assert len(model.sizes) < len(inputs) / 4
    assert batcher.stats.requests == 40 and batcher.stats.batches == len(model.sizes)
    assert model.threads == {"tfcnn-infer_0"}  # never on the event loop's thread


def test_batches_stay_within_max_batch_and_a_larger_request_runs_alone():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=8, window_ms=5)
    inputs = [image(1, n=3) for _ in range(10)] + [image(2, n=20)]
    results = asyncio.run(_run_all(batcher, inputs))
    assert all(not isinstance(r, BaseException) for r in results)
    assert 20 in model.sizes and all(size <= 8 for size in model.sizes if size != 20)
    assert sum(model.sizes) == 50


def test_a_lone_request_waits_at_most_the_window():
    async def one() -> float:
        batcher = MicroBatcher(FakeModel(seconds=0), window_ms=50)
        batcher.start()
        start = time.perf_counter()
        await batcher.run(image(1))
        took = time.perf_counter() - start
        await batcher.close()
        return took

    assert asyncio.run(one()) < 0.5


def test_a_failing_model_call_fails_its_batch_and_the_batcher_goes_on():
    model = FakeModel(fail_on=99.0)

    async def scenario() -> tuple[list, np.ndarray]:
        batcher = MicroBatcher(model, window_ms=20)
        batcher.start()
        try:
            first = await asyncio.gather(batcher.run(image(99)), batcher.run(image(1)),
                                         return_exceptions=True)
            later = await batcher.run(image(2))
        finally:
            await batcher.close()
        return first, later

    first, later = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in first)
    np.testing.assert_array_equal(later, [[8.0]])


def test_after_close_requests_are_refused():
    async def scenario() -> None:
        batcher = MicroBatcher(FakeModel())
        batcher.start()
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.run(image(1))

    asyncio.run(scenario())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeModel(), max_batch=0)
    with pytest.raises(ValueError, match="window_ms"):
        MicroBatcher(FakeModel(), window_ms=-1)
