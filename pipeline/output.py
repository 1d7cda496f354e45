"""Where results go: hive-partitioned Parquet datasets, each file committed whole.

``OUT/sessions/scan_date=YYYY-MM-DD/<run_id>-<n>.parquet`` and the same under ``frames/``.
A reader (DuckDB, pandas, polars) never sees a half-written file (see
:class:`pipeline.storage.Store`). Per chunk the frames are committed first, then the
sessions (the commit point), then the ledger entry, so a session row always has its
frames and a crash anywhere leaves a state the ledger can recover from.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.ledger import Ledger
from pipeline.schema import EVIDENCE_SCHEMA, FRAME_SCHEMA, SESSION_SCHEMA, to_table
from pipeline.storage import Store


def partition(dataset: str, scan_date: str) -> str:
    """The relative folder of one dataset's partition for a scan date."""
    return f"{dataset}/scan_date={scan_date}"


class RunWriter:
    """Buffers one run's rows and commits them in chunks of about ``sessions_per_file`` sessions.

    Each session's frames and evidence become Arrow tables as they arrive: the buffer is
    columnar (a fraction of the dicts' memory) and a commit only concatenates, so the end
    of a run does not wait on converting every frame row at once."""

    def __init__(self, store: Store, ledger: Ledger | None, *, run_id: str, scan_date: str, sessions_per_file: int = 500) -> None:
        self.store = store
        self.ledger = ledger
        self.run_id = run_id
        self.scan_date = scan_date
        self.sessions_per_file = sessions_per_file
        self._sessions: list[dict] = []
        self._frames: list[pa.Table] = []
        self._evidence: list[pa.Table] = []
        self._part = 0
        self.files: list[str] = []

    def add(self, session_row: dict, frame_rows: list[dict], evidence_rows: list[dict] | None = None) -> None:
        """Queue one session, its frames and its evidence; commits a chunk when the buffer is full."""
        self._sessions.append(session_row)
        if frame_rows:
            self._frames.append(to_table(frame_rows, FRAME_SCHEMA))
        if evidence_rows:
            self._evidence.append(to_table(evidence_rows, EVIDENCE_SCHEMA))
        if len(self._sessions) >= self.sessions_per_file:
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered: frames and evidence, then sessions, then the ledger entry."""
        if not self._sessions:
            return
        chunk = f"{self.run_id}-{self._part:05d}"
        if self._frames:
            self.files.append(self.store.write_parquet(f"{partition('frames', self.scan_date)}/{chunk}.parquet", pa.concat_tables(self._frames)))
        if self._evidence:
            self.files.append(self.store.write_parquet(f"{partition('evidence', self.scan_date)}/{chunk}.parquet", pa.concat_tables(self._evidence)))
        self.files.append(self.store.write_parquet(f"{partition('sessions', self.scan_date)}/{chunk}.parquet", to_table(self._sessions, SESSION_SCHEMA)))
        if self.ledger is not None:
            self.ledger.commit(chunk, self._sessions)
        self._part += 1
        self._sessions, self._frames, self._evidence = [], [], []
