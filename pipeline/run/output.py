"""Where results go: hive-partitioned Parquet datasets, each file committed whole.

``OUT/sessions/scan_date=YYYY-MM-DD/<run_id>-<n>.parquet`` and the same under ``frames/``,
``evidence/``, ``identities/`` (templates: biometric), ``fingerprints/`` and ``links/``.
A reader (DuckDB, pandas, polars) never sees a half-written file (see
:class:`pipeline.storage.Store`). Per chunk the other datasets are committed first, then the
sessions (the commit point), then the ledger entry, so a session row always has its
frames and a crash anywhere leaves a state the ledger can recover from.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.run.ledger import Ledger
from pipeline.schema import SESSION_SCHEMA, partition, to_table
from pipeline.session.assemble import FinishedSession
from pipeline.session.records import SessionRow
from pipeline.storage import Store


class RunWriter:
    """Buffers one run's rows and commits them in chunks of about ``sessions_per_file`` sessions.

    Each session's frames and evidence arrive as Arrow tables: the buffer is columnar and a
    commit only concatenates, so the end of a run does not wait on converting every frame."""

    def __init__(
        self, store: Store, ledger: Ledger | None, *, run_id: str, scan_date: str, sessions_per_file: int = 500
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.run_id = run_id
        self.scan_date = scan_date
        self.sessions_per_file = sessions_per_file
        self._sessions: list[SessionRow] = []
        self._frames: list[pa.Table] = []
        self._evidence: list[pa.Table] = []
        self._identities: list[pa.Table] = []
        self._fingerprints: list[pa.Table] = []
        self._links: list[pa.Table] = []
        self._part = 0
        self.files: list[str] = []
        self.sessions_committed = 0  # in chunks whose sessions file and ledger entry are written

    def add(self, session: FinishedSession) -> None:
        """Queue one session, its frames and its evidence; commits a chunk when the buffer is full."""
        self._sessions.append(session.row)
        if session.frames is not None:
            self._frames.append(session.frames)
        for table, buffer in (
            (session.evidence, self._evidence),
            (session.identity, self._identities),
            (session.fingerprint, self._fingerprints),
            (session.links, self._links),
        ):
            if table is not None:
                buffer.append(table)
        if len(self._sessions) >= self.sessions_per_file:
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered: frames and evidence, then sessions, then the ledger entry."""
        if not self._sessions:
            return
        chunk = f"{self.run_id}-{self._part:05d}"
        for dataset, tables in (
            ("frames", self._frames),
            ("evidence", self._evidence),
            ("identities", self._identities),
            ("fingerprints", self._fingerprints),
            ("links", self._links),
        ):
            if tables:
                self.files.append(
                    self.store.write_parquet(
                        f"{partition(dataset, self.scan_date)}/{chunk}.parquet", pa.concat_tables(tables)
                    )
                )
        rows = [row.to_dict() for row in self._sessions]
        self.files.append(
            self.store.write_parquet(
                f"{partition('sessions', self.scan_date)}/{chunk}.parquet", to_table(rows, SESSION_SCHEMA)
            )
        )
        if self.ledger is not None:
            self.ledger.commit(chunk, rows)
        self.sessions_committed += len(rows)
        self._part += 1
        self._sessions, self._frames, self._evidence = [], [], []
        self._identities, self._fingerprints, self._links = [], [], []
