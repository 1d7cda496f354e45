from dataclasses import replace

import cv2
import numpy as np

from pipeline.config import EvidenceConfig
from pipeline.schema import EVIDENCE_SCHEMA
from pipeline.session.evidence import encode_jpeg, evidence_table, select_evidence
from pipeline.session.records import FrameRecords
from tests.helpers import session_row


def test_top_scores_and_both_sides_of_a_swap():
    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3])
    assert select_evidence(times, scores, swap_at_s=None, top_spoof=2) == [(1, "top_spoof"), (3, "top_spoof")]
    assert select_evidence(times, scores, swap_at_s=1.2, top_spoof=1) == [
        (1, "top_spoof"),
        (2, "before_swap"),
        (3, "after_swap"),
    ]
    assert select_evidence(times, scores, swap_at_s=0.0, top_spoof=0) == [(0, "after_swap")]


def test_rows_only_for_flagged_sessions_unless_told_and_never_when_off():
    crops = np.zeros((3, 128, 128, 3), np.uint8)
    records = FrameRecords.empty(4)
    records = replace(
        records,
        pts_s=np.arange(4) / 10,
        bbox=np.array([[0, 0, 9, 9], [np.nan] * 4, [0, 0, 9, 9], [0, 0, 9, 9]], np.float32),
    )
    records = records.with_scores(np.array([0.2, 0.7, 0.4], np.float32))
    flagged = session_row(decision="spoof")
    table = evidence_table(flagged, records, crops, EvidenceConfig(top_spoof=1))
    assert [(r["frame_index"], r["kind"], round(r["spoof_score"], 3)) for r in table.to_pylist()] == [
        (2, "top_spoof", 0.7)
    ]
    assert table.schema == EVIDENCE_SCHEMA and table.column("session_id").to_pylist() == [flagged.session_id]
    live = replace(flagged, decision="live")
    assert evidence_table(live, records, crops, EvidenceConfig()) is None
    assert evidence_table(live, records, crops, EvidenceConfig(flagged_only=False, top_spoof=2)).num_rows == 2
    assert evidence_table(flagged, records, crops, EvidenceConfig(enabled=False)) is None


def test_jpeg_round_trip_keeps_the_picture():
    rgb = np.zeros((128, 128, 3), np.uint8)
    rgb[:, :64, 0] = 255
    data = encode_jpeg(rgb, 64, 90)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert back.shape == (64, 64, 3) and back[32, 10, 0] > 200 and back[32, 50, 0] < 60
