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


class HeldModel(FakeModel):
    """A fake model whose calls each wait until the test releases them: what gathers while
    the model runs is then known exactly, with no timing involved."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.called = threading.Semaphore(0)  # one release per call started
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.called.release()
        if not self.release.wait(60):
            raise RuntimeError("never released")
        return super().__call__(batch)


async def _model_called(model: HeldModel) -> None:
    # A guard against a hang, not a speed target: before issue 25 the call waited for the
    # window (60 s below) and this gave up first.
    assert await asyncio.to_thread(model.called.acquire, True, 30), "the model was not called"


def test_a_lone_request_runs_at_once_whatever_the_window():
    model = HeldModel()

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(model, window_ms=60_000)
        batcher.start()
        try:
            pending = asyncio.ensure_future(batcher.run(image(3)))
            await _model_called(model)  # called with the one request, no wait for others
            assert model.sizes == [] and not pending.done()
            model.release.set()
            return await pending
        finally:
            await batcher.close()

    np.testing.assert_array_equal(asyncio.run(scenario()), [[12.0]])
    assert model.sizes == [1]


def test_what_gathers_while_the_model_runs_makes_the_next_call():
    model = HeldModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch=8, window_ms=60_000)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.run(image(1)))
            await _model_called(model)  # the model is busy with `first`...
            later = [asyncio.ensure_future(batcher.run(image(v, n=3))) for v in (2, 3, 4)]
            await asyncio.sleep(0)  # ...while three more requests (9 images) queue
            model.release.set()
            return await asyncio.gather(first, *later)
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    # The first ran alone; then what had gathered, as far as max_batch allows (3 + 3),
    # then the rest: never a call of one request while others were waiting.
    assert model.sizes == [1, 6, 3]
    assert [len(r) for r in results] == [1, 3, 3, 3]
    np.testing.assert_array_equal(results[3], [[16.0]] * 3)


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
