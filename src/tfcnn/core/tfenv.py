"""Loading TensorFlow on demand, without its start-up chatter.

TensorFlow's C++ runtime writes several lines to stderr while it loads and while it
first looks for devices (oneDNN notice, CUDA stubs, CPU features). They say nothing a
tfcnn user can act on, and they bury the tool's own output, so they are hidden at the
file-descriptor level during those two moments only. Set TFCNN_TF_LOGS=1 to see them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C++ logs included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (and initialise its devices) with its start-up logs hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("TFCNN_TF_LOGS") == "1":
        import tensorflow as tf

        return tf
    try:
        stderr_fd_ok = os.fstat(2) is not None
    except OSError:
        stderr_fd_ok = False
    with stderr_to_devnull() if stderr_fd_ok else contextlib.nullcontext():
        import tensorflow as tf

        tf.config.list_logical_devices()
    return tf
