"""Helpers shared by many tests: typed rows with defaults, free ports, reading an output back."""

from __future__ import annotations

import socket
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

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
        "decision": "live",
        "reasons": (),
        "swap_detected": False,
        "swap_at_s": None,
        "static": False,
        "blink_count": 1,
        "blinks": ((1.0, 1.2),),
        "occluded_regions": (),
        "model_version": "test",
        "threshold": 0.5,
        "run_id": "r1",
        "scanned_at": datetime.now(UTC),
        "input_key": None,
        "extra": None,
    }
    return SessionRow(**(base | fields))


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_sessions(out: str, **options: Any) -> list[dict]:
    """Every committed ``sessions`` row of a local output folder, as dicts."""
    return ds.dataset(f"{out}/sessions", format="parquet", partitioning="hive", **options).to_table().to_pylist()


def add_rows(writer: RunWriter, session: dict, frames: list[dict], evidence: list[dict] | None = None) -> None:
    """Queue a fabricated session (columns not given are null) with its frame and evidence rows."""
    row = SessionRow(**({f.name: None for f in fields(SessionRow)} | {"reasons": ()} | session))
    frame_table = to_table(frames, FRAME_SCHEMA) if frames else None
    evidence_table = to_table(evidence, EVIDENCE_SCHEMA) if evidence else None
    writer.add(FinishedSession(row, frame_table, evidence_table))
