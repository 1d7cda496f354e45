"""Files written aside and renamed into place: a reader, or a run killed mid-write, sees
the whole new file or the old one, never part of one. The one atomic write of the product:
local outputs of :class:`pipeline.storage.Store`, checkpoints, cards, ONNX caches, reports.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_aside(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, flushed to disk, then renamed to ``path``.

    The temporary name is hidden (``.name.<random>.tmp``) and unique, so processes writing
    the same file at once (workers exporting one model) do not mix their bytes; it is
    removed when ``write`` fails. The data is fsynced before the rename, so a power loss
    after the rename cannot leave an empty file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
