"""Downloading a registered dataset into tfcnn's cache: mirrors, limits, progress, verification.

Each file is tried on every mirror in turn and checked (IDX structure, SHA-256) as it
arrives; the four reach the cache only once all of them have been verified, so a failed
download leaves nothing behind. A mirror may not send more than the file can be, nor
take longer than a deadline per file, nor stall longer than the read timeout. Temporary
files of a download that was killed are removed by the next one. `tfcnn.data.locate`
decides when a download is needed; `tfcnn.data.cifar` downloads its archive with `fetch`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from tfcnn.core.errors import DatasetError
from tfcnn.core.fsutil import atomic_path
from tfcnn.data.idx import read_idx_with_sha256
from tfcnn.data.registry import DatasetFile, DatasetInfo, check_array, check_splits

_CHUNK = 1 << 20
# Per-file deadline when none is given: a minute, plus the file's largest size at 64 KiB/s
# (0.5 Mbit/s): 13 min for MNIST's training images, 44 min for CIFAR-10's archive.
_BASE_DEADLINE_S = 60.0
_MIN_RATE = 64 * 1024
# Temporary names are `.NAME.RANDOM.tmp.PID` (see `_pid_suffix`).
_TEMP_NAME = re.compile(r"^\..+\.tmp(?:\.(\d+))?$")
_STARTED = time.time()  # this process's start, near enough: when tfcnn.data first loaded

T = TypeVar("T")


class MirrorFailure(Exception):
    """One mirror failed for one file; the next mirror is tried."""


@dataclass(frozen=True)
class Limits:
    """How long a download may take: `timeout` per read, `deadline` (s) per file, or None
    for one from the file's size (`deadline_for`)."""

    timeout: float = 30.0
    deadline: float | None = None


def one_line(e: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(e).split()) or type(e).__name__


def mirror_list(info: DatasetInfo, env: Mapping[str, str],
                mirrors: Sequence[str] | None) -> tuple[str, ...]:
    """Mirrors to try: `mirrors`, else `$TFCNN_MIRRORS` (comma-separated), else the registry's."""
    if mirrors is not None:
        return tuple(mirrors)
    from_env = tuple(m.strip() for m in env.get("TFCNN_MIRRORS", "").split(",") if m.strip())
    return from_env or info.mirrors


def deadline_from_env(env: Mapping[str, str]) -> float | None:
    """`$TFCNN_DOWNLOAD_DEADLINE` in seconds, or None when unset."""
    text = env.get("TFCNN_DOWNLOAD_DEADLINE", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DatasetError(f"TFCNN_DOWNLOAD_DEADLINE={text!r}: expected a number of seconds > 0")
    return value


def deadline_for(max_bytes: int | None, limits: Limits) -> float:
    """Seconds one file may take: the given deadline, else one from its size."""
    if limits.deadline is not None:
        return limits.deadline
    return _BASE_DEADLINE_S + (max_bytes or 100 << 20) / _MIN_RATE


def gzip_bound(size: int | None) -> int | None:
    """The most bytes a gzip of `size` bytes of content can take (stored blocks, headers)."""
    # Deflate's stored blocks add 5 bytes per 64 KiB; a gzip header and trailer ~30 bytes
    # plus the file name. 1/1000 and 4 KiB are far above both.
    return None if size is None else size + size // 1000 + 4096


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process, alive
        return True
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove temporary files that killed downloads left in `folder`; the paths removed.

    A temp file is stale when the process named in it has ended, or, without a process
    id, when it was last written before this process started.
    """
    removed = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            match = _TEMP_NAME.match(path.name)
            if not match or not path.is_file():
                continue
            pid = match.group(1)
            with contextlib.suppress(OSError):
                stale = (not _pid_alive(int(pid)) if pid
                         else path.stat().st_mtime < _STARTED)
                if stale:
                    path.unlink()
                    removed.append(path)
    return removed


def _pid_suffix() -> str:
    return f".{os.getpid()}"


def _check_length(resp: http.client.HTTPResponse, max_bytes: int | None) -> int | None:
    length = resp.headers.get("Content-Length", "")
    expected = int(length) if length.strip().isdigit() else None
    if expected is not None and max_bytes is not None and expected > max_bytes:
        raise MirrorFailure(f"announces {expected} bytes, more than the {max_bytes} this file "
                            "can be")
    return expected


def fetch(url: str, dest: Path, *, max_bytes: int | None, limits: Limits, progress: bool,
          desc: str) -> None:
    """Download `url` into `dest`, refusing more than `max_bytes` or a slow or stalled mirror."""
    deadline = deadline_for(max_bytes, limits)
    start = time.monotonic()
    received = 0

    def too_slow() -> MirrorFailure:
        return MirrorFailure(f"too slow: {received} bytes in {deadline:g} s, the deadline per "
                             "file (TFCNN_DOWNLOAD_DEADLINE sets it)")

    # No single wait may outlast the deadline, so it is checked at least that often.
    try:
        with urllib.request.urlopen(url, timeout=min(limits.timeout, deadline)) as resp, \
                open(dest, "wb") as out:
            expected = _check_length(resp, max_bytes)
            # disable=None: tqdm stays silent when stderr is not a terminal.
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                      disable=None if progress else True, file=sys.stderr, leave=False) as bar:
                # read1: whatever has arrived (one socket read), so the clock is checked often.
                while chunk := resp.read1(_CHUNK):
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise MirrorFailure(f"sent more than {max_bytes} bytes, the most this "
                                            "file can be; stopped reading")
                    if time.monotonic() - start > deadline:
                        raise too_slow()
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except TimeoutError:
        # A wait cut short by the deadline is the deadline's doing, not a stall.
        if time.monotonic() - start >= deadline:
            raise too_slow() from None
        raise
    if expected is not None and received != expected:
        raise MirrorFailure(f"truncated: received {received} of {expected} bytes")


def try_mirrors(filename: str, mirrors: Sequence[str], attempt: Callable[[str], T]) -> T:
    """`attempt(url)` for `filename` on each mirror until one succeeds; else one DatasetError
    listing every URL and why it failed."""
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            return attempt(url)
        except DatasetError as e:  # already names the URL
            failures.append(one_line(e))
        except urllib.error.HTTPError as e:
            e.close()
            failures.append(f"{url}: HTTP {e.code} {one_line(e.reason)}")
        except urllib.error.URLError as e:
            failures.append(f"{url}: {one_line(e.reason)}")
        except TimeoutError:
            failures.append(f"{url}: no data for the read timeout; stopped")
        except (MirrorFailure, OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {one_line(e)}")
    raise DatasetError("tried " + "; ".join(failures))


def _download_idx(f: DatasetFile, tmp: Path, mirrors: Sequence[str], limits: Limits,
                  progress: bool) -> np.ndarray:
    def attempt(url: str) -> np.ndarray:
        fetch(url, tmp, max_bytes=gzip_bound(f.size), limits=limits, progress=progress,
              desc=f.filename)
        arr, digest = read_idx_with_sha256(tmp, max_bytes=f.size, source=url)
        if digest != f.sha256:
            raise MirrorFailure(f"SHA-256 of the IDX content is {digest}, expected {f.sha256}")
        return arr

    return try_mirrors(f.filename, mirrors, attempt)


@contextlib.contextmanager
def cache_folder(cache: Path):  # noqa: ANN201 (a context manager)
    """Create `cache` (and its parents) for a download; remove what was created on failure."""
    # Folders this call creates, deepest first, so a failure can remove them again.
    created = [p for p in (cache, *cache.parents) if not p.exists()]
    clean_stale_temps(cache)
    try:
        yield cache
    finally:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty, i.e. after a failure


def temp_beside(target: Path):  # noqa: ANN201 (atomic_path's context manager)
    """`atomic_path(target)` with this process's id in the temporary name."""
    return atomic_path(target, suffix=_pid_suffix())


def download_dataset(info: DatasetInfo, cache: Path, mirrors: Sequence[str], limits: Limits,
                     progress: bool) -> dict[str, np.ndarray]:
    """Download and verify an IDX dataset's four files into `cache`; their arrays by role."""
    if not mirrors:
        raise DatasetError("no mirrors configured")
    with cache_folder(cache), contextlib.ExitStack() as stack:
        # Each file's temp stays beside its target until all four are verified; leaving the
        # stack without an error renames them into place, an error deletes them all.
        arrays, sources = {}, {}
        for f in info.files:
            tmp = stack.enter_context(temp_beside(cache / f.filename))
            arrays[f.role] = _download_idx(f, tmp, mirrors, limits, progress)
            sources[f.role] = str(cache / f.filename)
            check_array(info, f.role, arrays[f.role], sources[f.role])
        check_splits(info, arrays, sources)
    return arrays
