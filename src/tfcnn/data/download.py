"""Downloading a registered dataset into tfcnn's cache: mirrors, progress, verification.

Each file is tried on every mirror in turn and checked (IDX structure, SHA-256) as it
arrives; the four reach the cache only once all of them have been verified, so a failed
download leaves nothing behind. `tfcnn.data.locate` decides when a download is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfcnn.core.errors import DatasetError
from tfcnn.core.fsutil import atomic_path
from tfcnn.data.idx import decode_idx, gunzip_if_gzip
from tfcnn.data.registry import DatasetFile, DatasetInfo, check_array, check_splits

_CHUNK = 1 << 20


class _MirrorFailure(Exception):
    """One mirror failed for one file; the next mirror is tried."""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(e).split()) or type(e).__name__


def mirror_list(info: DatasetInfo, env: Mapping[str, str],
                 mirrors: Sequence[str] | None) -> tuple[str, ...]:
    if mirrors is not None:
        return tuple(mirrors)
    from_env = tuple(m.strip() for m in env.get("TFCNN_MIRRORS", "").split(",") if m.strip())
    return from_env or info.mirrors


def _fetch(url: str, dest: Path, timeout: float, progress: bool, desc: str) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length", "")
        expected = int(length) if length.strip().isdigit() else None
        received = 0
        # disable=None: tqdm stays silent when stderr is not a terminal.
        with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  disable=None if progress else True, file=sys.stderr, leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    if expected is not None and received != expected:
        raise _MirrorFailure(f"truncated: received {received} of {expected} bytes")


def _download_file(f: DatasetFile, tmp: Path, mirrors: Sequence[str], timeout: float,
                   progress: bool) -> np.ndarray:
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + f.filename
        try:
            _fetch(url, tmp, timeout, progress, f.filename)
            raw = gunzip_if_gzip(tmp.read_bytes(), url)
            arr = decode_idx(raw, url)
            digest = hashlib.sha256(raw).hexdigest()
            if digest != f.sha256:
                raise _MirrorFailure(f"SHA-256 of the IDX content is {digest}, "
                                     f"expected {f.sha256}")
            return arr
        except DatasetError as e:  # already names the URL
            failures.append(one_line(e))
        except urllib.error.HTTPError as e:
            e.close()
            failures.append(f"{url}: HTTP {e.code} {one_line(e.reason)}")
        except urllib.error.URLError as e:
            failures.append(f"{url}: {one_line(e.reason)}")
        except (_MirrorFailure, OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {one_line(e)}")
    raise DatasetError("tried " + "; ".join(failures))


def download_dataset(info: DatasetInfo, cache: Path, mirrors: Sequence[str], timeout: float,
              progress: bool) -> dict[str, np.ndarray]:
    if not mirrors:
        raise DatasetError("no mirrors configured")
    # Folders this call creates, deepest first, so a failure can remove them again.
    created = [p for p in (cache, *cache.parents) if not p.exists()]
    try:
        # Each file's temp stays beside its target until all four are verified; leaving the
        # stack without an error renames them into place, an error deletes them all.
        with contextlib.ExitStack() as stack:
            arrays, sources = {}, {}
            for f in info.files:
                tmp = stack.enter_context(atomic_path(cache / f.filename))
                arrays[f.role] = _download_file(f, tmp, mirrors, timeout, progress)
                sources[f.role] = str(cache / f.filename)
                check_array(info, f.role, arrays[f.role], sources[f.role])
            check_splits(info, arrays, sources)
        return arrays
    finally:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty, i.e. after a failure
