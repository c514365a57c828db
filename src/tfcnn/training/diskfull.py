"""A full disk while training: which file could not be written, and how to go on.

A run that fills the disk stops with one line naming the file and the command that
continues it; when the file is the `--cache disk` folder's, resuming with the cache would
fill the disk again, so the line says to continue without it.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError or TensorFlow error that says the disk (or quota) is full."""
    return (getattr(exc, "errno", None) in _DISK_FULL
            or any(text in str(exc) for text in _DISK_FULL_TEXT))


def disk_full_message(exc: BaseException, where: Path, run_path: Path) -> str:
    """One line: the file that could not be written, and how to continue."""
    path = getattr(exc, "filename", None)
    if not path:  # TensorFlow names the file in its message: "PATH; No space left on device"
        found = re.search(r"(\S+); (?:" + "|".join(_DISK_FULL_TEXT) + ")", str(exc))
        path = found.group(1) if found else where
    if _in_disk_cache(path, where, run_path):  # resuming with the cache would fill it again
        return _cache_full_message(path, Path(path).parent, run_path)
    return (f"{path}: no space left on device while saving; what was saved before is intact: "
            f"free some space, then continue with: tfcnn train --resume {run_path}")


def _in_disk_cache(path: Any, where: Path, run_path: Path) -> bool:
    """Whether `path` is a file of the run's `--cache disk` folder (RUN/cache)."""
    folder = Path(path).absolute().parent
    return any(folder == (run / "cache").absolute() for run in (Path(where), Path(run_path)))


def _cache_full_message(path: Any, cache: Path, run_path: Path) -> str:
    return (f"{path}: no space left on device while caching the decoded images; what was "
            f"saved before is intact: free some space ({cache} holds only decoded copies of "
            f"the images and may be deleted), or continue without the cache: "
            f"tfcnn train --resume {run_path} --cache stream")
