"""What has been scanned already: the ledger that makes runs incremental and exactly-once.

Each session's ``input_key`` is a hash of the input's identity (its URI plus size and
modification time, or its content hash), the model (version and weights) and the scan
settings that change results. A run skips every key in the ledger, so running the same
command again does no work twice, new files are picked up, and a new model or new
settings give new rows beside the old ones.

Commit order, per output chunk ``<run_id>-<n>``: frames and evidence files, then the
sessions file (the commit point), then the ledger file ``_ledger/committed/<run_id>-<n>.parquet``. A run
killed at any moment leaves one of these states, and :meth:`Ledger.recover` (run at the
start of the next run) completes or sets aside each: a sessions file without its ledger
file gets one (its rows are complete: the file was renamed into place whole); a frames or
evidence file without its sessions file is moved to ``_ledger/uncommitted/`` where readers
do not see it (its sessions will be scanned again); temporary files are removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.errors import LedgerBusy, UsageError
from pipeline.schema import STATUS_FAILED
from pipeline.storage import Store, filesystem_for

log = logging.getLogger(__name__)

LEDGER_DIR = "_ledger"
COMMITTED_DIR = f"{LEDGER_DIR}/committed"
UNCOMMITTED_DIR = f"{LEDGER_DIR}/uncommitted"
LOCK_FILE = f"{LEDGER_DIR}/lock"
LEDGER_SCHEMA = pa.schema(
    [("input_key", pa.string()), ("session_id", pa.string()), ("source", pa.string()), ("status", pa.string())]
)


def input_identity(uri: str, mode: str = "stat") -> str:
    """What identifies the content of ``uri`` now: ``size:mtime_ns`` (``stat``) or a SHA-256
    of its bytes (``content``); ``missing`` when it cannot be found."""
    try:
        fs, path = filesystem_for(uri)
        info = fs.get_file_info(path)
    except (OSError, ValueError):
        return "missing"
    if info.type.name != "File":
        return "missing"
    if mode == "stat":
        return f"{info.size}:{info.mtime_ns}"
    h = hashlib.sha256()
    try:
        with fs.open_input_stream(path) as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return "unreadable"
    return "sha256:" + h.hexdigest()


def scan_fingerprint(model_version: str, weights_digest: str, settings: dict) -> str:
    """Short hash of what makes two scans of one input give different rows."""
    text = json.dumps(
        {"model": model_version, "weights": weights_digest, "settings": settings}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_key(uri: str, identity: str, fingerprint: str) -> str:
    """The ledger key of one input under one scan fingerprint."""
    return hashlib.sha256(f"{uri}\0{identity}\0{fingerprint}".encode()).hexdigest()[:32]


def chunk_name(relative: str) -> str:
    """``<run_id>-<n>`` of a data or ledger file path."""
    return posixpath.basename(relative).removesuffix(".parquet")


@dataclass
class Recovery:
    """What :meth:`Ledger.recover` found left over by an interrupted run."""

    ledger_rebuilt: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    temporaries_removed: int = 0

    def __bool__(self) -> bool:
        return bool(self.ledger_rebuilt or self.set_aside or self.temporaries_removed)


class Ledger:
    """The ledger of one output directory; hold :meth:`lock` while writing to it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the output directory for this run (local outputs; one writer per S3 prefix)."""
        if not self.store.local:
            return
        path = self.store.path(LOCK_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:  # never follow a link planted there: the lock would create or truncate a file elsewhere
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if os.path.islink(path):
                raise UsageError(
                    f"{self.store.display(LOCK_FILE)} is a symbolic link (to {os.readlink(path)}): "
                    "remove it; the lock file is never followed"
                ) from exc
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LedgerBusy(
                f"another liveness run is writing to {self.store.display()}; wait for it or use another --out"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _chunks(self, relative: str) -> dict[str, str]:
        return {chunk_name(p): p for p in self.store.committed(relative)}

    def recover(self) -> Recovery:
        """Complete or set aside what an interrupted run left (see the module docstring)."""
        found = Recovery()
        # every dataset a run writes: a run killed mid-write leaves a temporary file in any of them
        for dataset in ("sessions", "frames", "evidence", "identities", "fingerprints", "links", LEDGER_DIR):
            for temp in self.store.list(dataset, ".tmp"):
                if posixpath.basename(temp).startswith("."):
                    self.store.delete(temp)
                    found.temporaries_removed += 1
        sessions, committed = self._chunks("sessions"), self._chunks(COMMITTED_DIR)
        orphans = {
            **{f"frames:{c}": p for c, p in self._chunks("frames").items()},
            **{f"evidence:{c}": p for c, p in self._chunks("evidence").items()},
        }
        for chunk, relative in sessions.items():
            if chunk not in committed:
                table = self.store.read_parquet(relative)
                if "input_key" in table.column_names:
                    self._write(chunk, table.select(["input_key", "session_id", "source", "status"]).to_pylist())
                    found.ledger_rebuilt.append(chunk)
        for tagged, relative in orphans.items():
            if tagged.split(":", 1)[1] not in sessions:
                self.store.move(relative, f"{UNCOMMITTED_DIR}/{relative}")
                found.set_aside.append(relative)
        if found:
            log.warning(
                "recovered an interrupted run: ledger rebuilt for %d committed file(s), "
                "%d uncommitted frames or evidence file(s) moved to %s, %d temporary file(s) removed",
                len(found.ledger_rebuilt),
                len(found.set_aside),
                UNCOMMITTED_DIR,
                found.temporaries_removed,
            )
        return found

    def attempts(self) -> tuple[set[str], Counter[str]]:
        """The input keys committed so far with a row that did not fail, and how many times
        each other key failed; sessions files whose ledger entry a crash prevented count
        too (so a read-only ``--dry-run`` sees the same as a run after recovery)."""
        committed = self._chunks(COMMITTED_DIR)
        files = list(committed.values()) + [
            p for chunk, p in self._chunks("sessions").items() if chunk not in committed
        ]
        finished: set[str] = set()
        failed: Counter[str] = Counter()
        for relative in files:
            table = self.store.read_parquet(relative)
            if "input_key" not in table.column_names:
                continue
            statuses = table.column("status").to_pylist() if "status" in table.column_names else []
            for key, status in zip(table.column("input_key").to_pylist(), statuses or [None] * table.num_rows,
                                   strict=True):  # fmt: skip
                if key and status == STATUS_FAILED:
                    failed[key] += 1
                elif key:
                    finished.add(key)
        return finished, Counter({k: n for k, n in failed.items() if k not in finished})

    def commit(self, chunk: str, rows: list[dict]) -> None:
        """Record the sessions of a committed chunk (after its sessions file is in place)."""
        self._write(chunk, [{k: r.get(k) for k in LEDGER_SCHEMA.names} for r in rows])

    def _write(self, chunk: str, rows: list[dict]) -> None:
        self.store.write_parquet(f"{COMMITTED_DIR}/{chunk}.parquet", pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA))
