"""How one analysed and scored session becomes what is written: its ``sessions`` row, its
``frames`` rows and its ``evidence`` rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import ScanConfig
from pipeline.schema import DECISION_SPOOF, FINGERPRINT_SCHEMA, IDENTITY_SCHEMA
from pipeline.scoring.registry import ScorerEntry
from pipeline.session.aggregate import (
    REASON_SPOOF_SCORE,
    ScoreDecision,
    aggregate_session,
    decide_scores,
    pool_others,
    pool_scores,
)
from pipeline.session.analyse import SessionAnalysis
from pipeline.session.evidence import evidence_table
from pipeline.session.records import OtherFaces, SessionRow
from pipeline.signals.card import SignalCard
from pipeline.video.decode import DecodeReport


@dataclass(frozen=True)
class RunContext:
    """What every row of one run shares: the run, the time, the scorers and the settings."""

    run_id: str
    scanned_at: datetime
    scorers: tuple[ScorerEntry, ...]
    config: ScanConfig
    identity_version: str = ""  # the identity card's version, in every identities row
    signal_card: SignalCard | None = None  # which rules may decide (None: every one)

    @property
    def model_version(self) -> str:
        """Every scorer's version, joined: a new version of any of them gives new rows."""
        return "+".join(e.card.version for e in self.scorers)

    @property
    def thresholds(self) -> dict[str, float]:
        """Every scorer's threshold, by name (calibrated, else its card's for sessions or photos)."""
        return {e.name: e.threshold for e in self.scorers}

    @property
    def bands(self) -> dict[str, float]:
        """Every scorer's review band, by name (its operating point's, else ``aggregate.review_band``)."""
        return {e.name: e.band(self.config.aggregate.review_band) for e in self.scorers}


@dataclass(frozen=True)
class FinishedSession:
    """A session ready to commit: its row, and its frame, evidence, identity (biometric),
    fingerprint and link tables (None when it has none)."""

    row: SessionRow
    frames: pa.Table | None
    evidence: pa.Table | None
    identity: pa.Table | None = None
    fingerprint: pa.Table | None = None
    links: pa.Table | None = None


def examined(pts_s: np.ndarray, duration_s: float | None, sample_fps: float) -> tuple[float | None, float | None]:
    """How much of the video the sampled frames cover: up to when (the last sampled frame's
    slot end), and that as a share of its duration. A long video meets ``decode.max_frames``
    early: its row says it was examined for the first seconds only.

    >>> examined(np.array([0.0, 0.5, 1.0]), 600.0, 2.0)
    (1.5, 0.0025)
    """
    if not len(pts_s):
        return None, None
    until = float(pts_s[-1]) + 1.0 / sample_fps
    if duration_s is not None and duration_s > 0:
        until = min(until, duration_s)
        return until, round(until / duration_s, 4)
    return until, None


def decode_columns(report: DecodeReport | None) -> dict[str, Any]:
    """The row's columns of what decoding found (all null when the session failed first)."""
    if report is None:
        return {}
    return {
        "decode_end": report.end,
        "bad_packets": report.bad_packets,
        "timestamp_resets": report.timestamp_resets,
        "size_changes": report.size_changes,
        "decoded_until_s": report.decoded_until_s,
    }


def assemble_session(
    analysis: SessionAnalysis,
    scores: Mapping[str, np.ndarray] | None,
    run: RunContext,
    input_key: str | None,
    links: pa.Table | None = None,
    others: Mapping[str, np.ndarray] | None = None,
) -> FinishedSession:
    """The rows of one session: ``scores`` are its faces' spoof probabilities by scorer (NaN
    for a face not scored; None when the session was not scored: it failed, or had no face).
    The deciding scorers' pooled scores give the decision (:func:`decide_scores`);
    ``spoof_score`` is the score it rests on. ``others`` are the spoof probabilities of the
    faces beside the main one (``frames.other_rows`` says on which frames), judged by the
    same scorers (:func:`pool_others`; the ``other_face`` reason).
    ``links`` are the links to earlier sessions found for it (each kind a ``linked`` reason)."""
    config = run.config
    records, verdicts = analysis.frames.records, analysis.frames.verdicts
    pooled: dict[str, float] = {}
    peak: dict[str, float] = {}
    threshold, band, reason = None, None, REASON_SPOOF_SCORE
    other, other_verdict = None, None
    if scores is not None:
        for name, values in scores.items():
            value = pool_scores(values.tolist(), config.aggregate.method, config.aggregate.topk)
            assert value is not None  # a scored session has at least one face
            pooled[name] = value
            peak[name] = float(np.nanmax(values))
        verdict = decide_scores(pooled, run.scorers, review_band=config.aggregate.review_band,
                                deciders=config.decision.scorers, combine=config.decision.combine)  # fmt: skip
        thresholds = run.thresholds
        used = verdict.scorers
        spoof = (
            np.mean([scores[n] for n in used], axis=0)
            if used
            else np.full(len(analysis.frames.crops), np.nan, np.float32)
        )
        threshold = float(np.mean([thresholds[n] for n in used])) if used else None
        band = float(np.mean([run.bands[n] for n in used])) if used else None
        reason = f"{REASON_SPOOF_SCORE}:{verdict.fired or (used[0] if used else '')}"
        records = records.with_scores(spoof.astype(np.float32), scores)
        if others is not None:
            other, other_verdict = judge_other_faces(analysis.frames.other_rows, others, run)
    aggregate = aggregate_session(
        records, threshold=threshold, config=config.aggregate, rules=config.decision, verdicts=verdicts,
        error=analysis.error, score_reason=reason,
        linked=() if links is None else links.column("kind").to_pylist(), partial_decode=analysis.video.partial,
        decides=None if run.signal_card is None else run.signal_card.decider(config.decision.max_false_fire_rate),
        review_band=band, other_face=other_verdict is not None and other_verdict.decision == DECISION_SPOOF,
    )  # fmt: skip
    session, video = analysis.session, analysis.video
    until, coverage = examined(records.pts_s, video.duration_s, config.decode.sample_fps)
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
        b2_score=pooled.get("b2"),
        b2_score_max=peak.get("b2"),
        reference_score=pooled.get("reference"),
        reference_score_max=peak.get("reference"),
        scores=pooled or None,
        thresholds=run.thresholds if pooled else None,
        decision=aggregate.decision,
        reasons=aggregate.reasons,
        swap_detected=verdicts.swap_detected,
        swap_at_s=verdicts.swap_at_s,
        swap_times_s=verdicts.swap_times_s,
        swap_distance=verdicts.swap_distance,
        identity_frames=None
        if analysis.frames.identity_series is None
        else (0 if analysis.frames.identity is None else analysis.frames.identity.frames),
        static=verdicts.static,
        blink_count=verdicts.blink_count,
        blinks=verdicts.blinks,
        eyes_watched_s=verdicts.eyes_watched_s,
        occluded_regions=verdicts.occluded_regions,
        model_version=run.model_version,
        threshold=aggregate.threshold,
        run_id=run.run_id,
        scanned_at=run.scanned_at,
        input_key=input_key,
        extra=dict(session.extra) or None,
        **asdict(video.provenance),
        examined_until_s=until,
        coverage=coverage,
        **decode_columns(video.decoding),
        other_faces_scored=None if other is None else len(other),
        other_spoof_score=None if other_verdict is None else other_verdict.spoof_score,
        other_scores=None if other is None else other.pooled or None,
    )
    table = (
        records.to_table(
            session_id=session.session_id, model_version=run.model_version, run_id=run.run_id, others=other
        )  # fmt: skip
        if len(records)
        else None
    )
    evidence = None
    if scores is not None:
        shown = _other_evidence(analysis, other)
        evidence = evidence_table(row, records, analysis.frames.crops, config.evidence, other_face=shown)
    return FinishedSession(
        row, table, evidence, identity_table(analysis, run), fingerprint_table(analysis, run.run_id), links
    )


def judge_other_faces(
    rows: np.ndarray, others: Mapping[str, np.ndarray], run: RunContext
) -> tuple[OtherFaces, ScoreDecision | None]:
    """The other faces' record and the deciding scorers' judgement of their pooled scores
    (:func:`pool_others`; None when none was scored); each face's deciding score is the mean
    of the scorers the judgement rests on."""
    config = run.config
    pooled = pool_others(others, config.aggregate.other_topk)
    verdict = None
    if pooled:
        verdict = decide_scores(pooled, run.scorers, review_band=config.aggregate.review_band,
                                deciders=config.decision.scorers, combine=config.decision.combine)  # fmt: skip
    used = verdict.scorers if verdict is not None else ()
    spoof = np.mean([others[n] for n in used], axis=0) if used else np.full(len(rows), np.nan)
    return OtherFaces(rows, dict(others), spoof.astype(np.float32), pooled), verdict


def _other_evidence(analysis: SessionAnalysis, other: OtherFaces | None) -> tuple[int, float, np.ndarray] | None:
    """The other face that scored highest: its frame record, deciding score and main-spec crop (None: none scored)."""
    if other is None or not len(other) or np.isnan(other.spoof).all():
        return None
    best = int(np.nanargmax(other.spoof))
    crop = analysis.frames.other_face_crops[best]
    return int(other.rows[best]), float(other.spoof[best]), crop


def identity_table(analysis: SessionAnalysis, run: RunContext) -> pa.Table | None:
    """The session's ``identities`` row (its template: biometric data), or None when it has
    none or templates are not stored."""
    template = analysis.frames.identity
    if template is None or not run.config.identity.store or analysis.error is not None:
        return None
    return pa.Table.from_pydict(
        {
            "session_id": [analysis.session.session_id],
            "template": [template.vector.tolist()],
            "frames": [template.frames],
            "identity_version": [run.identity_version],
            "run_id": [run.run_id],
        },
        schema=IDENTITY_SCHEMA,
    )


def fingerprint_table(analysis: SessionAnalysis, run_id: str) -> pa.Table | None:
    """The session's ``fingerprints`` row (its frame hashes), or None without one."""
    fingerprint = analysis.frames.fingerprint
    if fingerprint is None or not len(fingerprint) or analysis.error is not None:
        return None
    return pa.Table.from_pydict(
        {
            "session_id": [analysis.session.session_id],
            "times_s": [fingerprint.times.tolist()],
            "hashes": [fingerprint.hashes.tolist()],
            "run_id": [run_id],
        },
        schema=FINGERPRINT_SCHEMA,
    )
