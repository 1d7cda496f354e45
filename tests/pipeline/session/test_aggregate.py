from dataclasses import replace

import numpy as np
import pytest

from pipeline.config import AggregateConfig, DecisionConfig
from pipeline.session.aggregate import aggregate_session, decide, pool_scores
from pipeline.session.records import FrameRecords
from pipeline.signals.collector import SessionVerdicts


def frames(scores, faces=None) -> FrameRecords:
    """Frame records with these spoof scores (None: no score) and face counts (a main face's
    box wherever there is a face)."""
    faces = faces or [1 if s is not None else 0 for s in scores]
    records = FrameRecords.empty(len(scores))
    spoof = np.array([np.nan if s is None else s for s in scores], np.float32)
    bbox = np.array([(10, 10, 50, 50) if f else (np.nan,) * 4 for f in faces], np.float32).reshape(-1, 4)
    return replace(records, n_faces=np.array(faces, np.int32), spoof_score=spoof, bbox=bbox)


def test_pooling_methods():
    s = [0.1, 0.2, 0.3, 0.9]
    assert pool_scores(s, "mean") == pytest.approx(0.375)
    assert pool_scores(s, "median") == pytest.approx(0.25)
    assert pool_scores(s, "topk", topk=2) == pytest.approx(0.6)
    assert pool_scores(s, "topk", topk=10) == pytest.approx(0.375)
    assert pool_scores([], "mean") is None
    with pytest.raises(ValueError, match="pooling method"):
        pool_scores(s, "max")


def test_decision_band_around_threshold():
    assert decide(0.9, 0.5, 0.1) == "spoof"
    assert decide(0.6, 0.5, 0.1) == "spoof"
    assert decide(0.55, 0.5, 0.1) == "review"
    assert decide(0.45, 0.5, 0.1) == "review"
    assert decide(0.4, 0.5, 0.1) == "live"
    assert decide(0.5, 0.5, 0.0) == "spoof"


def test_ok_session_row():
    row = aggregate_session(frames([0.9, 0.8, None, 0.7], faces=[1, 2, 0, 1]), threshold=0.5, config=AggregateConfig())
    assert row.status == "ok"
    assert row.frames_sampled == 4 and row.frames_scored == 3
    assert row.face_ratio == 0.75 and row.multi_face_ratio == 0.25
    assert row.spoof_score == pytest.approx(0.8) and row.spoof_score_max == pytest.approx(0.9)
    assert row.decision == "spoof" and list(row.reasons) == ["spoof_score", "multi_face"]


def test_live_session_has_no_reasons():
    row = aggregate_session(frames([0.05, 0.1]), threshold=0.5, config=AggregateConfig())
    assert row.decision == "live" and list(row.reasons) == []


def test_no_face_session_goes_to_review():
    row = aggregate_session(frames([None, None]), threshold=0.5, config=AggregateConfig())
    assert row.status == "no_face" and row.decision == "review" and list(row.reasons) == ["no_face"]
    assert row.spoof_score is None and row.face_ratio == 0.0


def test_failed_session_has_error_and_no_decision():
    row = aggregate_session(FrameRecords.empty(), threshold=0.5, config=AggregateConfig(), error="empty file (0 bytes)")
    assert row.status == "failed" and row.error == "empty file (0 bytes)" and row.decision is None


def test_topk_pooling_catches_a_short_attack():
    scores = [0.1] * 18 + [0.95, 0.95]
    assert aggregate_session(frames(scores), threshold=0.5, config=AggregateConfig()).decision == "live"
    assert (
        aggregate_session(frames(scores), threshold=0.5, config=AggregateConfig(method="topk", topk=2)).decision
        == "spoof"
    )


def test_signals_follow_the_rules():
    signals = SessionVerdicts(swap_detected=True, swap_at_s=1.5, static=False, blink_count=2, occluded_regions=())
    row = aggregate_session(frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), verdicts=signals)
    assert row.decision == "spoof" and list(row.reasons) == ["swap"]
    relaxed = DecisionConfig(swap="review")
    assert (
        aggregate_session(
            frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), rules=relaxed, verdicts=signals
        ).decision
        == "review"
    )
    ignored = DecisionConfig(swap="ignore")
    row = aggregate_session(
        frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), rules=ignored, verdicts=signals
    )
    assert row.decision == "live" and list(row.reasons) == []


def test_review_signals_do_not_soften_a_spoof_score():
    signals = SessionVerdicts(no_blink=True, occluded_regions=("mouth", "nose"))
    row = aggregate_session(frames([0.9, 0.9]), threshold=0.5, config=AggregateConfig(), verdicts=signals)
    assert row.decision == "spoof" and list(row.reasons) == [
        "spoof_score",
        "no_blink",
        "occluded:mouth",
        "occluded:nose",
    ]
    row = aggregate_session(frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), verdicts=signals)
    assert row.decision == "review" and list(row.reasons) == ["no_blink", "occluded:mouth", "occluded:nose"]


def test_multi_face_ratio_rule():
    many = frames([0.1] * 10, faces=[2] * 3 + [1] * 7)
    row = aggregate_session(many, threshold=0.5, config=AggregateConfig())
    assert (
        row.multi_face_ratio == pytest.approx(0.3) and row.decision == "review" and list(row.reasons) == ["multi_face"]
    )
    row = aggregate_session(many, threshold=0.5, config=AggregateConfig(), rules=DecisionConfig(multi_face_ratio=0.5))
    assert row.decision == "live" and list(row.reasons) == []


def test_static_stream_is_spoof_by_default():
    row = aggregate_session(
        frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), verdicts=SessionVerdicts(static=True)
    )
    assert row.decision == "spoof" and list(row.reasons) == ["static"]


def test_a_link_to_an_earlier_session_is_a_reason_with_its_own_action():
    cfg = AggregateConfig()
    row = aggregate_session(frames([0.1, 0.1]), threshold=0.5, config=cfg, linked=["same_face", "same_face"])
    assert row.decision == "review" and row.reasons == ("linked:same_face",)
    spoofy = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, rules=DecisionConfig(linked="spoof"), linked=["same_video"]
    )
    assert spoofy.decision == "spoof"
    ignored = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, rules=DecisionConfig(linked="ignore"), linked=["same_video"]
    )
    assert ignored.decision == "live" and ignored.reasons == ()
    no_face = aggregate_session(frames([None]), threshold=0.5, config=cfg, linked=["same_video"])
    assert no_face.reasons == ("no_face", "linked:same_video") and no_face.decision == "review"


def test_the_same_applicant_again_is_named_and_decides_nothing_while_another_applicants_face_is_reviewed():
    """Issue 26 item 6: a returning applicant is information (`inform`), one face under two
    applicants is the fraud signal (the `linked` action)."""
    cfg = AggregateConfig()
    again = aggregate_session(frames([0.1]), threshold=0.5, config=cfg, linked=["reapplied"])
    assert again.decision == "live" and again.reasons == ("linked:reapplied",)
    both = aggregate_session(frames([0.1]), threshold=0.5, config=cfg, linked=["reapplied", "same_face"])
    assert both.decision == "review" and both.reasons == ("linked:reapplied", "linked:same_face")
    strict = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, rules=DecisionConfig(reapplied="review"), linked=["reapplied"]
    )
    assert strict.decision == "review"
    inform = DecisionConfig(swap="inform")  # any rule can inform instead of deciding
    swapped = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, rules=inform, verdicts=SessionVerdicts(swap_detected=True)
    )
    assert swapped.decision == "live" and swapped.reasons == ("swap",)


def test_a_session_too_short_for_the_temporal_rules_is_never_live():
    """Issue 18 item 3: a photo renamed .mp4, a 1-frame video or a .jpg was decided live."""
    short = SessionVerdicts(too_short=True)
    row = aggregate_session(frames([0.1]), threshold=0.5, config=AggregateConfig(), verdicts=short)
    assert row.decision == "review" and row.reasons == ("too_short",)
    spoof = aggregate_session(
        frames([0.1]), threshold=0.5, config=AggregateConfig(), verdicts=short, rules=DecisionConfig(too_short="spoof")
    )
    assert spoof.decision == "spoof"
    kept = aggregate_session(
        frames([0.1]), threshold=0.5, config=AggregateConfig(), verdicts=short, rules=DecisionConfig(too_short="ignore")
    )
    assert kept.decision == "live" and kept.reasons == ()


def test_a_partly_decoded_session_is_never_live_and_says_why():
    """Issue 18 item 3: a file decoded in part (bad packets, cut short) was ``ok`` and could be live."""
    row = aggregate_session(frames([0.1]), threshold=0.5, config=AggregateConfig(), partial_decode=True)
    assert row.decision == "review" and row.reasons == ("partial_decode",)
    faceless = aggregate_session(
        frames([None], faces=[0]), threshold=0.5, config=AggregateConfig(), partial_decode=True
    )
    assert faceless.reasons == ("no_face", "partial_decode")
    rules = DecisionConfig(partial_decode="ignore")
    kept = aggregate_session(frames([0.1]), threshold=0.5, config=AggregateConfig(), rules=rules, partial_decode=True)
    assert kept.decision == "live" and kept.reasons == ()


def test_a_face_not_scored_counts_for_the_nearest_scored_one():
    """The scorers' schedule leaves faces unscored: the session score weighs each scored face
    by the faces it stands for, so a dense stretch does not outweigh the rest of the session."""
    dense_end = [0.1, None, None, None, 0.1, None, None, None, 0.9, 0.9, 0.9, 0.9]
    row = aggregate_session(frames(dense_end, faces=[1] * 12), threshold=0.5, config=AggregateConfig())
    # the two 0.1 stand for faces 0-2 and 3-6 (a tie goes to the earlier), the 0.9 for 7-11
    assert row.frames_scored == 6 and row.spoof_score == pytest.approx((0.1 * 7 + 0.9 * 5) / 12)
    assert pool_scores([0.1, None, None, None, 0.1, 0.9, 0.9], "median") == pytest.approx(0.1)
    assert pool_scores([0.1, 0.9, 0.9], "median") == pytest.approx(0.9)  # all scored: the plain median


def test_a_rule_not_measured_on_real_footage_is_named_but_cannot_move_the_decision():
    """Issue 26 item 1: signals obey the scorers' rule; the signal card says which may decide."""
    cfg = AggregateConfig()
    unmeasured = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, verdicts=SessionVerdicts(swap_detected=True, no_blink=True),
        linked=["same_video"], decides=lambda reason: reason == "no_blink",
    )  # fmt: skip
    assert unmeasured.decision == "review" and unmeasured.reasons == ("swap", "no_blink", "linked:same_video")
    measured = aggregate_session(
        frames([0.1]), threshold=0.5, config=cfg, verdicts=SessionVerdicts(swap_detected=True), decides=lambda r: True
    )
    assert measured.decision == "spoof"


def test_a_face_beside_the_main_one_counts_by_its_highest_scores_and_fires_other_face():
    from pipeline.session.aggregate import pool_others

    # a phone held up for a moment among a bystander's frames: its top scores count, a mean would hide it
    others = {"reference": np.array([0.05, 0.1, 0.99, 0.98, 0.1, 0.97, 0.05]), "b2": np.zeros(0)}
    assert pool_others(others, topk=3) == {"reference": pytest.approx(0.98)}
    assert pool_others({}, topk=3) == {}
    row = aggregate_session(frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), other_face=True)
    assert row.decision == "review" and list(row.reasons) == ["other_face"]
    row = aggregate_session(
        frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), other_face=True,
        rules=DecisionConfig(other_face="spoof"), decides=lambda reason: reason != "other_face",
    )  # fmt: skip
    assert row.decision == "live" and list(row.reasons) == ["other_face"]  # not measured on real footage: it informs
    row = aggregate_session(
        frames([0.1, 0.1]), threshold=0.5, config=AggregateConfig(), other_face=True,
        rules=DecisionConfig(other_face="spoof"),
    )  # fmt: skip
    assert row.decision == "spoof"
