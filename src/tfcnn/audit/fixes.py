"""Fixing what an audit found, by hand: a CSV to edit, moves that can be undone.

`write_fixes` writes one row per finding: `file, given, suggested, action, score, issue,
root` (`root`: the folder holding the class folders). Every row starts as `keep`; the user
changes `action` to:

- `move`: the file goes into the class folder named in `suggested` (edit it to any existing
  class), at the same place under it (ROOT/given/a/b.png -> ROOT/suggested/a/b.png);
- `set-aside`: the file goes to ROOT/.set-aside/given/..., which no tfcnn command reads
  (names starting with "." are skipped), to look at later.

`apply_fixes` checks every row first (one line naming the CSV line for the first bad one:
nothing moves), then moves the files, writing each move to an undo log (JSON lines,
`{"from": ..., "to": ...}`, and `{"made": DIR}` for each folder it had to create) before
making it. `undo_fixes` moves them back, newest first, and removes the folders the moves
made if they are empty again. Nothing is ever deleted or overwritten. Registered datasets
(no files) can be written but not applied. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_write_text

COLUMNS = ("file", "given", "suggested", "action", "score", "issue", "root")
ACTIONS = ("keep", "move", "set-aside")
SET_ASIDE = ".set-aside"


def write_fixes(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write finding `rows` (dicts with the `COLUMNS`, action defaulting to keep) as a CSV."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**{c: "" for c in COLUMNS}, "action": "keep",
                         **{k: v for k, v in row.items() if k in COLUMNS}})
    target = Path(path)
    atomic_write_text(target, buffer.getvalue())
    return target


@dataclass(frozen=True)
class Move:
    line: int
    source: Path
    target: Path


@dataclass(frozen=True)
class Applied:
    """What `apply_fixes` did: files moved, rows kept, and the undo log (None: no moves)."""

    moved: int
    kept: int
    log: Path | None


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected the CSV --write-fixes wrote)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("file", "given", "suggested", "action", "root")
               if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"{path}:1: header lacks column(s) {', '.join(missing)} (expected "
                          f"{','.join(COLUMNS)})")
    try:
        return [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise ConfigError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def _plan(path: Path, line: int, row: dict[str, str | None]) -> Move | None:
    """The move a row asks for (None: keep), or `ConfigError` naming the line."""
    where = f"{path}:{line}"
    if None in row or any(v is None for v in row.values()):
        raise ConfigError(f"{where}: expected {len(COLUMNS)} fields like the header")
    action = (row["action"] or "").strip().lower()
    if action not in ACTIONS:
        raise ConfigError(f"{where}: action {row['action']!r}: expected one of "
                          f"{', '.join(ACTIONS)}")
    if action == "keep":
        return None
    root_text, given = (row["root"] or "").strip(), (row["given"] or "").strip()
    if not root_text:
        raise ConfigError(f"{where}: {row['file']!r} is not a file of a folder: dataset; "
                          "only those can be moved")
    root, source = Path(root_text), Path(row["file"] or "")
    if not source.is_file():
        raise ConfigError(f"{where}: {source}: no such file (moved or renamed since the audit?)")
    inside = _relative(source, root / given)
    if inside is None:
        raise ConfigError(f"{where}: {source} is not under its given class folder "
                          f"{root / given}")
    if action == "set-aside":
        return Move(line, source, root / SET_ASIDE / given / inside)
    return Move(line, source, _class_folder(where, root, given, row) / inside)


def _relative(path: Path, folder: Path) -> Path | None:
    try:
        return path.absolute().relative_to(folder.absolute())
    except ValueError:
        return None


def _class_folder(where: str, root: Path, given: str, row: dict[str, Any]) -> Path:
    suggested = (row["suggested"] or "").strip()
    if not suggested or suggested.startswith(".") or "/" in suggested or "\\" in suggested:
        raise ConfigError(f"{where}: suggested {suggested!r}: expected a class folder's name")
    if suggested == given:
        raise ConfigError(f"{where}: action move, but suggested is the given class "
                          f"{given!r} (use keep)")
    folder = root / suggested
    if not folder.is_dir():
        known = sorted(e.name for e in root.iterdir() if e.is_dir() and e.name[0] != ".")
        raise ConfigError(f"{where}: class {suggested!r} has no folder {folder} (classes: "
                          f"{', '.join(known)})")
    return folder


def _check_moves(path: Path, moves: list[Move]) -> None:
    sources: dict[Path, int] = {}
    targets: dict[Path, int] = {}
    for move in moves:
        source, target = move.source.absolute(), move.target.absolute()
        for seen, key, what in ((sources, source, "file"), (targets, target, "target")):
            if key in seen:
                raise ConfigError(f"{path}:{move.line}: {what} {key} is also on line "
                                  f"{seen[key]}")
            seen[key] = move.line
        if target.exists():
            raise ConfigError(f"{path}:{move.line}: {move.target} exists already (nothing "
                              "is overwritten; rename one of them)")


def _free_log_path(csv_path: Path) -> Path:
    base = csv_path.with_name(csv_path.stem + ".undo.jsonl")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{csv_path.stem}.undo-{n}.jsonl")
    return path


def apply_fixes(csv_path: str | os.PathLike[str], log: str | os.PathLike[str] | None = None
                ) -> Applied:
    """Move the files the CSV's rows ask to (module doc); the undo log is `log`, default
    CSV-NAME.undo.jsonl beside the CSV (a free name: an old log is never overwritten)."""
    path = Path(csv_path)
    rows = _read_rows(path)
    planned = [(_plan(path, line, row)) for line, row in rows]
    moves = [m for m in planned if m is not None]
    _check_moves(path, moves)
    if not moves:
        return Applied(0, len(rows), None)
    log_path = Path(log) if log is not None else _free_log_path(path)
    if log_path.exists():
        raise ConfigError(f"{log_path}: exists already (an undo log is never overwritten)")
    with open(log_path, "x", encoding="utf-8") as out:
        for move in moves:
            _move(move.source, move.target, out)
    return Applied(len(moves), len(rows) - len(moves), log_path)


def _record(out: Any, entry: dict[str, str]) -> None:
    out.write(json.dumps(entry) + "\n")
    out.flush()
    os.fsync(out.fileno())


def _move(source: Path, target: Path, out: Any) -> None:
    """Log, then make: a crash between the two leaves a log line `undo` skips."""
    missing = [p for p in reversed(target.parents) if not p.exists()]
    for folder in missing:
        _record(out, {"made": str(folder.absolute())})
        folder.mkdir()
    _record(out, {"from": str(source.absolute()), "to": str(target.absolute())})
    if target.exists():  # appeared since the check
        raise ConfigError(f"{target}: exists already; stopped (undo with the log)")
    os.rename(source, target)


def _read_log(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the undo log ({e.strerror or e})") from None
    entries = []
    for number, text in enumerate(lines, 1):
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            entry = None
        if not (isinstance(entry, dict) and (set(entry) == {"from", "to"}
                                             or set(entry) == {"made"})):
            raise ConfigError(f"{path}:{number}: expected a move {{\"from\", \"to\"}} or "
                              f"{{\"made\"}} of an undo log, got {text[:60]!r}")
        entries.append((number, entry))
    return entries


def undo_fixes(log: str | os.PathLike[str]) -> int:
    """Move back every move in the undo `log` (checked first); returns how many."""
    path = Path(log)
    entries = _read_log(path)
    back = []
    for number, entry in entries:
        if "made" in entry:
            continue
        source, target = Path(entry["from"]), Path(entry["to"])
        if target.exists() and not source.exists():
            back.append((source, target))
        elif not (source.exists() and not target.exists()):  # else: never moved, or undone
            raise ConfigError(f"{path}:{number}: cannot move {target} back to {source} "
                              "(one is missing and the other is in the way)")
    for source, target in reversed(back):
        source.parent.mkdir(parents=True, exist_ok=True)
        os.rename(target, source)
    for _, entry in reversed(entries):
        if "made" in entry and Path(entry["made"]).is_dir():
            with contextlib.suppress(OSError):  # only when empty again
                Path(entry["made"]).rmdir()
    return len(back)
