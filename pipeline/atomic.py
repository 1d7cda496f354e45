"""Local files written aside and renamed into place: a reader, or a run killed mid-write,
sees the whole new file or the old one, never part of one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path


def write_aside(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``.

    The temporary name is unique, so processes writing the same file at once (workers
    exporting one model) do not mix their bytes; it is removed when ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
