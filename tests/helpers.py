"""Helpers shared by many tests: typed rows with defaults, free ports, reading an output back, scan processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from pipeline.run.output import RunWriter
from pipeline.schema import EVIDENCE_SCHEMA, FRAME_SCHEMA, to_table
from pipeline.session.assemble import FinishedSession
from pipeline.session.records import SessionRow

ROOT = Path(__file__).resolve().parent.parent  # the project folder


def session_row(**fields: Any) -> SessionRow:
    """A ``sessions`` row for tests that fabricate outputs: an ok, live session unless ``fields`` say otherwise."""
    base: dict[str, Any] = {
        "session_id": "s",
        "source": "/archive/s.mp4",
        "status": "ok",
        "error": None,
        "duration_s": 4.0,
        "width": 1280,
        "height": 720,
        "rotation": 0,
        "frames_decoded": 120,
        "frames_sampled": 48,
        "frames_scored": 48,
        "face_ratio": 1.0,
        "multi_face_ratio": 0.0,
        "spoof_score": 0.1,
        "spoof_score_max": 0.2,
        "b2_score": 0.3,
        "b2_score_max": 0.4,
        "reference_score": 0.1,
        "reference_score_max": 0.2,
        "scores": {"b2": 0.3, "reference": 0.1},
        "thresholds": {"b2": 0.5, "reference": 0.5},
        "decision": "live",
        "reasons": (),
        "swap_detected": False,
        "swap_at_s": None,
        "swap_times_s": (),
        "swap_distance": None,
        "identity_frames": 3,
        "static": False,
        "blink_count": 1,
        "blinks": ((1.0, 1.2),),
        "eyes_watched_s": 4.0,
        "occluded_regions": (),
        "model_version": "test",
        "threshold": 0.5,
        "run_id": "r1",
        "scanned_at": datetime.now(UTC),
        "input_key": None,
        "extra": None,
    }
    return SessionRow(**(base | fields))


def free_port(twin_offset: int = 0) -> int:
    """A loopback TCP port that nothing listens on now; with ``twin_offset``, ``port + twin_offset`` is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not twin_offset:
            return port
        if port + twin_offset < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + twin_offset))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


def read_sessions(out: str | Path, **options: Any) -> list[dict]:
    """Every committed ``sessions`` row of an output (``options`` go to ``pyarrow.dataset``, e.g. ``filesystem``)."""
    return ds.dataset(f"{out}/sessions", format="parquet", partitioning="hive", **options).to_table().to_pylist()


def sessions_by_id(out: str | Path, **options: Any) -> dict[str, dict]:
    """The ``sessions`` rows of an output keyed by session id; fails if a session has more than one row."""
    rows = read_sessions(out, **options)
    by_id = {r["session_id"]: r for r in rows}
    assert len(by_id) == len(rows), f"{len(rows) - len(by_id)} repeated session rows in {out}"
    return by_id


def scan_process(
    inputs: Path, out: Path, *options: str, stdout: int = subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``python -m pipeline.cli scan`` of ``inputs`` into ``out``, one session per file, as a child (stderr piped)."""
    argv = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "scan",
        str(inputs),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "output.sessions_per_file=1",
        *options,
    ]
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env)


def kill_when(
    proc: subprocess.Popen, ready: Callable[[], bool], *, timeout: float, poll_s: float, grace_s: float = 0.0
) -> None:
    """SIGKILL ``proc`` (itself, not its children) ``grace_s`` after ``ready()`` holds, it exits or ``timeout``
    passes, checking every ``poll_s``; then reap it."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(poll_s)
        if grace_s:
            time.sleep(grace_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def add_rows(writer: RunWriter, session: dict, frames: list[dict], evidence: list[dict] | None = None) -> None:
    """Queue a fabricated session (columns not given are null) with its frame and evidence rows."""
    row = SessionRow(**({f.name: None for f in fields(SessionRow)} | {"reasons": ()} | session))
    frame_table = to_table(frames, FRAME_SCHEMA) if frames else None
    evidence_table = to_table(evidence, EVIDENCE_SCHEMA) if evidence else None
    writer.add(FinishedSession(row, frame_table, evidence_table))


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"8m"``) mounted at ``path`` for the block, unmounted after;
    the test skips where mounting is not permitted (it needs root)."""
    path.mkdir(exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.decode().strip() or 'mount failed'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_disk(folder: Path, room: int = 0) -> Path:
    """A file in ``folder`` that leaves ``room`` bytes free on its file system; returns it."""
    stats = os.statvfs(folder)
    filler = folder / "filler.bin"
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - room))
    return filler
