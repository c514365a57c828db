"""Stopping a training run cleanly on SIGINT / SIGTERM.

The handler only records the request; the loop checks it between compiled calls, saves a
checkpoint and exits with 128 + the signal number, so `--resume` continues exactly there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StopRequest:
    """Set by a signal handler; the loop checks it between steps."""

    signum: int = 0
    previous: dict[int, Any] = field(default_factory=dict)
    # Multi-worker: every worker's requests combined, so that all stop after the same step.
    agree: Callable[[int], int] | None = None

    def stopping(self) -> int:
        """The signal to stop for, or 0 to carry on (the same on every worker)."""
        return self.agree(self.signum) if self.agree else self.signum


@contextlib.contextmanager
def stop_on_signals(agree: Callable[[int], int] | None = None) -> Iterator[StopRequest]:
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step.

    A second SIGINT falls back to the default (KeyboardInterrupt) for an impatient user.
    """
    request = StopRequest(agree=agree)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, _frame: Any) -> None:
        request.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for signum in (signal.SIGINT, signal.SIGTERM):
        request.previous[signum] = signal.signal(signum, handle)
    try:
        yield request
    finally:
        for signum, handler in request.previous.items():
            signal.signal(signum, handler)
