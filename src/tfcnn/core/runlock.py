"""One training process per run directory: a lock on `RUN/.lock`.

The lock is flock(2) on that file, held for as long as the process trains. The kernel
releases it when the process ends, however it ends (kill -9 included), so a lock can never
be stale: a file a killed process left is simply locked again. The file holds the holder's
pid, host, start time and command, only so that the process refused can say who holds the
run. The holder removes the file when it is done.

Where the file system refuses locks (some network mounts) the run goes on unlocked and
`RunLock.locked` is False; without fcntl (Windows) there is no lock either.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcnn.core.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# File systems that cannot lock answer one of these (NFS without its lock daemon: ENOLCK).
_CANNOT_LOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


@dataclass
class RunLock:
    """A held lock on a run directory (or, with `locked` False, the note that none could be
    taken, and why)."""

    path: Path                 # the lock file
    fd: int | None             # None: not locked
    why_not: str = ""          # why the file system took no lock ("": locked, or no fcntl)

    @property
    def locked(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        """Remove the lock file and let go of the lock (removed first, while still held)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


def _holder_record(command: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "command": command}


def _read_holder(fd: int) -> dict[str, Any]:
    """What the holder wrote; {} when it is unreadable or not written yet."""
    for attempt in range(2):
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict):
            return data
        if attempt == 0:  # the holder may be between taking the lock and writing its pid
            time.sleep(0.05)
    return {}


def _since(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return ""
    then, now = time.localtime(stamp), time.localtime()
    today = (then.tm_year, then.tm_yday) == (now.tm_year, now.tm_yday)
    return " since " + time.strftime("%H:%M" if today else "%Y-%m-%d %H:%M", then)


def in_use_message(run_path: Path, holder: dict[str, Any]) -> str:
    """The one line a refused process gets: who holds the run, since when, what to do."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return f"{run_path}: in use by another process; wait for it or stop it"
    host = holder.get("host")
    here = host in (None, socket.gethostname())
    where = "" if here else f" on {host}"
    command = holder.get("command") if isinstance(holder.get("command"), str) else "tfcnn"
    stop = f" (kill -INT {pid} saves a checkpoint first)" if here else ""
    return (f"{run_path}: in use by {command} (pid {pid}{where}){_since(holder.get('since'))}; "
            f"wait for it or stop it{stop}")


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (its holder may have removed it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def lock_run(run_path: Path, command: str = "tfcnn train") -> RunLock:
    """Lock `run_path` (created if missing) for this process, or raise RunDirError naming the
    process that holds it. Call `release()` when done (or use `locked_run`)."""
    run_path.mkdir(parents=True, exist_ok=True)
    path = run_path / LOCK_FILE
    if fcntl is None:  # not a refusal worth a note on every run: the platform has none
        return RunLock(path, None)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(in_use_message(run_path, holder)) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _CANNOT_LOCK:
                return RunLock(path, None, f"the file system refuses locks ({exc.strerror})")
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a file its holder had just removed: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder_record(command)).encode("utf-8"), 0)
    return RunLock(path, fd)


@contextlib.contextmanager
def locked_run(run_path: Path, command: str = "tfcnn train", *,
               enabled: bool = True) -> Iterator[RunLock]:
    """`lock_run` for the block (`enabled` False: no lock, e.g. off a multi-worker chief)."""
    lock = lock_run(run_path, command) if enabled else RunLock(run_path / LOCK_FILE, None)
    try:
        yield lock
    finally:
        lock.release()
