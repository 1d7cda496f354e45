"""Analysts' verdicts on sessions: the labels that mining, training and evaluation trust first.

``liveness verdicts add FILE --out DIR`` commits a CSV of ``session_id``, ``verdict``
(spoof | live | unsure) and optional ``attack``, ``note``, ``analyst`` (the columns the
HTML report's "Download verdicts" button writes) to the append-only ``verdicts`` dataset:
one Parquet file per commit, never rewritten. The latest verdict of a session wins (the
``verdicts`` view of ``liveness query``); every earlier one stays (``verdict_history``).

The whole file is checked before anything is written: an unknown session id, a bad
verdict or attack, or a session named twice is reported with its row number, and nothing
is committed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipeline.errors import InputError
from pipeline.reports.query import run_query
from pipeline.schema import ATTACK_TYPES, VERDICT_SCHEMA, VERDICTS, new_run_id, partition
from pipeline.storage import Store
from pipeline.text import is_control

VERDICTS_RUN_PREFIX = "verdicts-"
CSV_COLUMNS = ("session_id", "verdict", "attack", "note", "analyst")
REQUIRED_COLUMNS = ("session_id", "verdict")
MAX_NOTE = 2000
MAX_ANALYST = 200
MAX_PROBLEMS = 20  # problems listed in one message; the count says how many there were


@dataclass(frozen=True)
class Verdict:
    """One analyst's verdict on one session, as read from a CSV row."""

    session_id: str
    verdict: str
    attack: str | None
    note: str | None
    analyst: str | None
    row: int  # its row number in the file (the header is row 1)


@dataclass(frozen=True)
class VerdictsCommit:
    """What one ``liveness verdicts add`` committed."""

    run_id: str
    file: str
    verdicts: int
    by_verdict: dict[str, int]


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _control(value: str) -> bool:
    return any(is_control(c) and c not in "\t\n" for c in value)


def read_verdicts_csv(path: Path, analyst: str | None = None) -> list[Verdict]:
    """The verdicts of a CSV file; ``analyst`` fills rows that name none.

    Raises :class:`InputError` naming every bad row (up to :data:`MAX_PROBLEMS`)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a spreadsheet's BOM is not part of the first column
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}): save the CSV as UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: no {' or '.join(missing)} column (columns: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    problems: list[str] = []
    seen: dict[str, int] = {}
    verdicts = []
    for row_number, raw in enumerate(reader, start=2):
        row = {k: (v if isinstance(v, str) else "") for k, v in raw.items() if k}
        session_id = (row.get("session_id") or "").strip()
        verdict = (row.get("verdict") or "").strip().lower()
        attack = _text(row.get("attack"))
        attack = attack.lower() if attack else None
        note, who = _text(row.get("note")), _text(row.get("analyst")) or analyst
        bad = []
        if not session_id:
            bad.append("no session_id")
        elif session_id in seen:
            bad.append(f"session {session_id!r} is also on row {seen[session_id]}")
        if verdict not in VERDICTS:
            bad.append(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if attack is not None and attack not in ATTACK_TYPES:
            bad.append(f"attack {attack!r} is not one of {', '.join(ATTACK_TYPES)}")
        elif attack is not None and verdict in VERDICTS and verdict != "spoof":
            bad.append(f"an attack type ({attack}) goes only with verdict spoof, not {verdict}")
        if note is not None and len(note) > MAX_NOTE:
            bad.append(f"note is {len(note)} characters (at most {MAX_NOTE})")
        if who is not None and len(who) > MAX_ANALYST:
            bad.append(f"analyst is {len(who)} characters (at most {MAX_ANALYST})")
        if any(_control(v) for v in (session_id, note or "", who or "")):
            bad.append("control characters in session_id, note or analyst")
        if bad:
            problems.append(f"row {row_number}: {'; '.join(bad)}")
            continue
        seen[session_id] = row_number
        verdicts.append(Verdict(session_id, verdict, attack, note, who, row_number))
    if problems:
        raise InputError(_listing(path, problems))
    if not verdicts:
        raise InputError(f"{path} holds no verdict rows")
    return verdicts


def _listing(path: Path, problems: list[str]) -> str:
    more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return (
        f"{path}: {len(problems)} bad row(s), nothing was committed:\n  " + "\n  ".join(problems[:MAX_PROBLEMS]) + more
    )


def add_verdicts(out: str, path: Path, *, analyst: str | None = None) -> VerdictsCommit:
    """Check every row of ``path`` against the output's sessions, then commit them all in one file."""
    verdicts = read_verdicts_csv(path, analyst)
    store = Store(out)
    known = set(run_query(out, "select distinct session_id from sessions").column("session_id").to_pylist())
    if not known:
        raise InputError(f"{store.display()} holds no scanned session: scan first, then add verdicts")
    unknown = [
        f"row {v.row}: session {v.session_id!r} is not in {store.display()}"
        for v in verdicts
        if v.session_id not in known
    ]
    if unknown:
        raise InputError(_listing(path, unknown))
    now = datetime.now(UTC)
    run_id = new_run_id(now, VERDICTS_RUN_PREFIX)
    table = pa.Table.from_pydict(
        {
            "session_id": [v.session_id for v in verdicts],
            "verdict": [v.verdict for v in verdicts],
            "attack": [v.attack for v in verdicts],
            "note": [v.note for v in verdicts],
            "analyst": [v.analyst for v in verdicts],
            "recorded_at": [now] * len(verdicts),
            "source_file": [path.name] * len(verdicts),
            "source_row": [v.row for v in verdicts],
            "run_id": [run_id] * len(verdicts),
        },
        schema=VERDICT_SCHEMA,
    )
    written = store.write_parquet(f"{partition('verdicts', now.date().isoformat())}/{run_id}.parquet", table)
    counts = {name: sum(v.verdict == name for v in verdicts) for name in VERDICTS}
    return VerdictsCommit(run_id, written, len(verdicts), counts)
