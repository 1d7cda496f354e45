"""The typed records of a session: validated frame columns, the session row and the schema."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from pipeline.config import ScanConfig
from pipeline.schema import FRAME_SCHEMA, SESSION_SCHEMA
from pipeline.scoring.registry import resolve_scorers
from pipeline.session.analyse import SessionAnalysis, VideoFacts
from pipeline.session.assemble import RunContext, assemble_session
from pipeline.session.frame_path import SessionFrames
from pipeline.session.records import FrameRecords, SessionRow
from pipeline.signals.collector import SessionVerdicts
from pipeline.video.sources import Session
from tests.helpers import session_row


def test_the_session_row_type_is_the_sessions_schema():
    assert [f.name for f in fields(SessionRow)] == SESSION_SCHEMA.names


def test_frame_records_refuse_columns_of_the_wrong_length():
    records = FrameRecords.empty(3)
    with pytest.raises(ValueError, match=r"ear_left must be an array of shape \(3,\)"):
        replace(records, ear_left=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"bbox must be an array of shape \(3, 4\)"):
        replace(records, bbox=np.zeros((3, 2), np.float32))


def _faces(n: int, with_face: list[bool]) -> FrameRecords:
    bbox = np.array([[10, 20, 30, 40] if f else [np.nan] * 4 for f in with_face], np.float32)
    return replace(FrameRecords.empty(n), pts_s=np.arange(n) / 10, n_faces=np.array(with_face, np.int32), bbox=bbox)


def test_scores_land_on_the_frames_with_a_face_and_nan_is_null_in_the_table():
    records = _faces(4, [True, False, True, True]).with_scores(np.array([0.1, 0.2, 0.3], np.float32))
    assert records.face_pts_s.tolist() == pytest.approx([0.0, 0.2, 0.3])
    table = records.to_table(session_id="s", model_version="m", run_id="r")
    assert table.schema == FRAME_SCHEMA
    assert table.column("spoof_score").to_pylist() == pytest.approx([0.1, None, 0.2, 0.3], nan_ok=False)
    assert table.column("ear_left").null_count == 4 and table.column("bbox_x").to_pylist()[1] is None
    with pytest.raises(ValueError, match="2 scores for 3 frames"):
        records.with_scores(np.zeros(2, np.float32))


def test_a_session_row_carries_the_verdicts_and_the_stored_blinks():
    verdicts = SessionVerdicts(
        blink_count=1,
        blinks=((0.1, 0.2),),
        eyes_watched_s=12.5,
        swap_detected=True,
        swap_at_s=0.3,
        static=False,
        occluded_regions=(),
    )
    frames = SessionFrames(_faces(4, [True] * 4), np.zeros((4, 8, 8, 3), np.uint8), verdicts)
    analysis = SessionAnalysis(
        session=Session("s", "/v/s.mp4", {"channel": "app"}), frames=frames, video=VideoFacts(2.0, 64, 48, 0, 24)
    )
    scorers = tuple(resolve_scorers({"b2": None, "reference": None}))
    run = RunContext(run_id="r", scanned_at=session_row().scanned_at, scorers=scorers, config=ScanConfig())
    scores = {"b2": np.array([0.9, 0.9, 0.8, 0.9], np.float32), "reference": np.array([0.1, 0.1, 0.2, 0.1], np.float32)}
    done = assemble_session(analysis, scores, run, "key")
    row = done.row
    # the b2 says spoof, the reference (the default decider: decision.scorers) says live: only the swap fires
    assert (row.status, row.decision, row.reasons) == ("ok", "spoof", ("swap",))
    assert row.spoof_score == pytest.approx(0.125) and row.reference_score == pytest.approx(0.125)
    assert row.b2_score == pytest.approx(0.875) and row.b2_score_max == pytest.approx(0.9)
    assert row.threshold == scorers[1].threshold
    assert row.thresholds == {"b2": scorers[0].threshold, "reference": scorers[1].threshold}
    assert row.model_version == f"{scorers[0].card.version}+{scorers[1].card.version}"
    frames = done.frames.to_pylist() if done.frames is not None else []
    assert [f["reference_score"] for f in frames] == pytest.approx([0.1, 0.1, 0.2, 0.1])
    assert dict(frames[0]["scores"]) == pytest.approx({"b2": 0.9, "reference": 0.1})
    assert (row.swap_detected, row.swap_at_s, row.blink_count, row.blinks) == (True, 0.3, 1, ((0.1, 0.2),))
    assert row.eyes_watched_s == 12.5  # the row says how long the eyes were watched
    assert (row.width, row.height, row.frames_decoded, row.input_key, row.extra) == (
        64,
        48,
        24,
        "key",
        {"channel": "app"},
    )
    assert row.to_dict()["blinks"] == [{"start_s": 0.1, "end_s": 0.2}]
    assert done.frames is not None and done.frames.num_rows == 4 and done.evidence is not None
    failed = assemble_session(SessionAnalysis.failed(analysis.session, "empty file (0 bytes)"), None, run, None)
    assert (failed.row.status, failed.row.error, failed.row.decision, failed.frames, failed.evidence) == (
        "failed", "empty file (0 bytes)", None, None, None)  # fmt: skip


def test_faces_beside_the_main_one_are_judged_written_per_frame_and_shown():
    crops = np.zeros((4, 8, 8, 3), np.uint8)
    held_up = np.full((3, 8, 8, 3), 200, np.uint8)
    frames = SessionFrames(
        _faces(4, [True] * 4), crops, SessionVerdicts(), other_crops={"main": held_up, "ref": held_up[:, :4, :4]},
        other_rows=np.array([1, 1, 3], np.int32),
    )  # fmt: skip
    analysis = SessionAnalysis(session=Session("s", "/v/s.mp4"), frames=frames, video=VideoFacts(1.0, 64, 48, 0, 4))
    scorers = tuple(resolve_scorers({"b2": None, "reference": None}))
    run = RunContext("r", session_row().scanned_at, scorers, ScanConfig())
    scores = {name: np.full(4, 0.01, np.float32) for name in ("b2", "reference")}
    spoofed = {"b2": np.full(3, 0.1, np.float32), "reference": np.array([0.999, 1.0, 0.998], np.float32)}
    done = assemble_session(analysis, scores, run, None, others=spoofed)
    row = done.row
    assert (row.decision, row.reasons) == ("review", ("other_face",))  # the main face is live, the held-up one not
    assert row.other_faces_scored == 3 and row.other_spoof_score == pytest.approx(0.999)
    assert row.other_scores == pytest.approx({"b2": 0.1, "reference": 0.999})
    assert done.frames is not None and done.frames.schema == FRAME_SCHEMA
    assert done.frames.column("other_faces_scored").to_pylist() == [0, 2, 0, 1]
    assert done.frames.column("other_spoof_score").to_pylist() == pytest.approx([None, 1.0, None, 0.998])
    assert done.evidence is not None
    shown = [r for r in done.evidence.to_pylist() if r["kind"] == "other_face"]
    assert [(r["frame_index"], r["spoof_score"]) for r in shown] == [(1, pytest.approx(1.0))]

    bystander = {"b2": np.full(3, 0.1, np.float32), "reference": np.array([0.3, 0.2, 0.1], np.float32)}
    row = assemble_session(analysis, scores, run, None, others=bystander).row
    assert (row.decision, row.reasons, row.other_faces_scored) == ("live", (), 3)
    alone = SessionFrames(_faces(4, [True] * 4), crops, SessionVerdicts())
    done = assemble_session(replace(analysis, frames=alone), scores, run, None, others={n: np.zeros(0) for n in scores})
    assert (done.row.other_faces_scored, done.row.other_spoof_score, done.row.other_scores) == (0, None, None)
    assert done.frames is not None and done.frames.column("other_faces_scored").to_pylist() == [0] * 4


def test_the_frames_table_owns_its_data():
    """A buffered table must not keep the records' buffers alive: those that come back from
    a Ray worker live in its object store, with the session's crops beside them."""
    records = _faces(3, [True, True, True]).with_scores(np.array([0.1, 0.2, 0.3], np.float32))
    table = records.to_table(session_id="s", model_version="m", run_id="r")
    records.spoof_score[:] = 0.9
    records.frame_index[:] = 7
    assert table.column("spoof_score").to_pylist() == pytest.approx([0.1, 0.2, 0.3])
    assert table.column("frame_index").to_pylist() == [0, 1, 2]


def test_the_template_goes_to_its_own_table_and_only_when_stored():
    from pipeline.signals.identity import IdentitySeries, IdentityTemplate
    from pipeline.video.fingerprint import Fingerprint

    series = IdentitySeries(np.array([0.0, 0.5]), np.ones((2, 128), np.float32))
    frames = SessionFrames(
        _faces(2, [True] * 2), np.zeros((2, 8, 8, 3), np.uint8), SessionVerdicts(),
        identity=IdentityTemplate(np.full(128, 0.5, np.float32), 2), identity_series=series,
        fingerprint=Fingerprint(np.array([0.0, 0.5]), np.array([1, 2**63], np.uint64)),
    )  # fmt: skip
    analysis = SessionAnalysis(session=Session("s", "/v/s.mp4"), frames=frames, video=VideoFacts(1.0, 64, 48, 0, 2))
    scorers = tuple(resolve_scorers({"b2": None, "reference": None}))
    scores = {name: np.array([0.1, 0.1], np.float32) for name in ("b2", "reference")}
    for store in (True, False):
        config = ScanConfig.model_validate({"identity": {"store": store}})
        run = RunContext("r", session_row().scanned_at, scorers, config, identity_version="dlib-v1")
        done = assemble_session(analysis, scores, run, None)
        assert done.row.identity_frames == 2 and "template" not in done.row.to_dict()
        assert done.fingerprint is not None and done.fingerprint.column("hashes").to_pylist() == [[1, 2**63]]
        if store:
            assert done.identity is not None and done.identity.column("template").to_pylist() == [[0.5] * 128]
            assert done.identity.column("identity_version").to_pylist() == ["dlib-v1"]
        else:
            assert done.identity is None
