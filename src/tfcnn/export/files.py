"""Writing an export's files: a folder swapped into place atomically, and sizes on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def size_of(path: Path) -> int:
    """Bytes of a file, or of all files in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; swap it in if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700; give the usual mode
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
            return
        # os.replace cannot replace a non-empty folder: move the old one aside first, and
        # put it back if the new one cannot take its place.
        holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                       dir=target.parent))
        os.replace(target, holder / "old")
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(holder / "old", target)
            raise
        shutil.rmtree(holder, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
