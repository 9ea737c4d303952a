"""Writing the files of a results folder so that concurrent launches and kills lose nothing.

Two rules, one place:

* **Every whole-file write is atomic** (:func:`atomic_write`): the bytes go to a temporary file
  with a *unique* name in the target's own folder (same filesystem, so the rename is atomic),
  are fsynced, then renamed over the target. A fixed temporary name (``plan.json.tmp``) lets two
  writers rename each other's file away — the race that made two simultaneous launches fail
  with ``No such file or directory: 'plan.json.tmp'``.
* **Read-modify-write files are updated under a lock** (:func:`update_json`): the read, the
  merge and the write happen while holding ``<file>.lock`` (``filelock``), so one launch's
  entries are never dropped by another's merge made from an older read.

This module imports nothing of the project's, so every layer may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

LOCK_TIMEOUT_S = 120.0
"""How long an update waits for another writer's lock before giving up with an error."""


def _write_replacing(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    """The one atomic writer: a unique temporary file in the target's folder, written by
    ``write``, flushed and fsynced, then renamed over ``path``; removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, content: str | bytes | Callable[[IO[Any]], None]) -> None:
    """Write ``path`` whole or not at all. ``content``: text, bytes, or a function that writes
    into the open binary file (``torch.save``, a zip writer)."""
    if isinstance(content, str):
        data = content.encode()
        _write_replacing(path, "wb", lambda f: f.write(data))
    elif isinstance(content, bytes):
        _write_replacing(path, "wb", lambda f: f.write(content))
    else:
        _write_replacing(path, "wb", content)


def atomic_write_text(path: Path, writer: Callable[[IO[str]], None]) -> None:
    """:func:`atomic_write` for a function that writes text (``csv`` writers): newline-exact."""
    _write_replacing(path, "w", writer)


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """A JSON file, atomically, keys sorted (the same object always gives the same bytes)."""
    atomic_write(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def update_json(path: Path, merge: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Read ``path`` (``{}`` if absent), apply ``merge``, write the result — all under
    ``<path>.lock``, so concurrent updaters see each other's entries. Returns what was written
    (the file is left untouched when ``merge`` returns what it read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        old = json.loads(path.read_text()) if path.exists() else {}
        new = merge(dict(old))
        if new != old:
            atomic_write(path, json.dumps(new, indent=1, sort_keys=True) + "\n")
        return new
