"""Where results go: hive-partitioned Parquet datasets, files written aside and renamed into place.

``OUT/sessions/scan_date=YYYY-MM-DD/<run_id>-<n>.parquet`` and the same under ``frames/``.
A reader (DuckDB, pandas, polars) never sees a half-written file: each file is written
under a hidden temporary name in its partition folder, then renamed. Frames of a batch of
sessions are committed before the sessions themselves, so a session row always has its frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import FRAME_SCHEMA, SESSION_SCHEMA, to_table


def partition_dir(out_dir: str | Path, dataset: str, scan_date: str) -> Path:
    """The folder of one dataset's partition for a scan date."""
    return Path(out_dir) / dataset / f"scan_date={scan_date}"


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` via a hidden temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class RunWriter:
    """Buffers one run's rows and commits them in files of about ``sessions_per_file`` sessions."""

    def __init__(self, out_dir: str | Path, *, run_id: str, scan_date: str, sessions_per_file: int = 500) -> None:
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.scan_date = scan_date
        self.sessions_per_file = sessions_per_file
        self._sessions: list[dict] = []
        self._frames: list[dict] = []
        self._part = 0
        self.files: list[Path] = []

    def add(self, session_row: dict, frame_rows: list[dict]) -> None:
        """Queue one session and its frames; commits a file pair when the buffer is full."""
        self._sessions.append(session_row)
        self._frames.extend(frame_rows)
        if len(self._sessions) >= self.sessions_per_file:
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered: frames first, then sessions."""
        if not self._sessions:
            return
        name = f"{self.run_id}-{self._part:05d}.parquet"
        if self._frames:
            self.files.append(write_parquet_atomic(to_table(self._frames, FRAME_SCHEMA), partition_dir(self.out_dir, "frames", self.scan_date) / name))
        self.files.append(write_parquet_atomic(to_table(self._sessions, SESSION_SCHEMA), partition_dir(self.out_dir, "sessions", self.scan_date) / name))
        self._part += 1
        self._sessions, self._frames = [], []
