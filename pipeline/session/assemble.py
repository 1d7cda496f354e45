"""How one analysed and scored session becomes what is written: its ``sessions`` row, its
``frames`` rows and its ``evidence`` rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from pipeline.config import ScanConfig
from pipeline.session.aggregate import aggregate_session
from pipeline.session.analyse import SessionAnalysis
from pipeline.session.evidence import evidence_table
from pipeline.session.records import SessionRow


@dataclass(frozen=True)
class RunContext:
    """What every row of one run shares: the run, the time, the model and the settings."""

    run_id: str
    scanned_at: datetime
    model_version: str
    threshold: float
    config: ScanConfig


@dataclass(frozen=True)
class FinishedSession:
    """A session ready to commit: its row, and its frame and evidence tables (None when it has none)."""

    row: SessionRow
    frames: pa.Table | None
    evidence: pa.Table | None


def assemble_session(
    analysis: SessionAnalysis, scores: np.ndarray | None, run: RunContext, input_key: str | None
) -> FinishedSession:
    """The rows of one session: ``scores`` are its crops' spoof scores (None when it was
    not scored: it failed, or had no face)."""
    frames = analysis.frames.records if scores is None else analysis.frames.records.with_scores(scores)
    verdicts = analysis.frames.verdicts
    config = run.config
    aggregate = aggregate_session(
        frames,
        threshold=run.threshold,
        config=config.aggregate,
        rules=config.decision,
        verdicts=verdicts,
        error=analysis.error,
    )
    session, video = analysis.session, analysis.video
    row = SessionRow(
        session_id=session.session_id,
        source=session.uri,
        status=aggregate.status,
        error=aggregate.error,
        duration_s=video.duration_s,
        width=video.width,
        height=video.height,
        rotation=video.rotation,
        frames_decoded=video.frames_decoded,
        frames_sampled=aggregate.frames_sampled,
        frames_scored=aggregate.frames_scored,
        face_ratio=aggregate.face_ratio,
        multi_face_ratio=aggregate.multi_face_ratio,
        spoof_score=aggregate.spoof_score,
        spoof_score_max=aggregate.spoof_score_max,
        decision=aggregate.decision,
        reasons=aggregate.reasons,
        swap_detected=verdicts.swap_detected,
        swap_at_s=verdicts.swap_at_s,
        static=verdicts.static,
        blink_count=verdicts.blink_count,
        blinks=verdicts.blinks,
        occluded_regions=verdicts.occluded_regions,
        model_version=run.model_version,
        threshold=run.threshold,
        run_id=run.run_id,
        scanned_at=run.scanned_at,
        input_key=input_key,
        extra=dict(session.extra) or None,
    )
    table = (
        frames.to_table(session_id=session.session_id, model_version=run.model_version, run_id=run.run_id)
        if len(frames)
        else None
    )
    evidence = evidence_table(row, frames, analysis.frames.crops, config.evidence) if scores is not None else None
    return FinishedSession(row, table, evidence)
