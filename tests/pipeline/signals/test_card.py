"""The signal card: which rules were measured on real footage, and a bad card refused."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ModelError
from pipeline.signals.card import read_signal_card
from training.cards.signal_cards import RULES


def test_the_shipped_card_measures_every_rule_on_real_live_footage():
    card = read_signal_card()
    for rule in (*RULES, "linked:same_face", "linked:same_video", "linked:reapplied"):
        assert card.decides(rule), rule
        measured = card.signals[rule]
        assert measured.live_sessions >= 18 and 0 <= measured.false_fires <= measured.live_sessions
        assert measured.hits <= measured.real_cases and len(measured.fired_on) in (0, measured.false_fires)
    assert not card.decides("a_new_rule")


def test_a_missing_or_corrupt_card_is_a_model_error_naming_the_file(tmp_path):
    with pytest.raises(ModelError, match="no signal card at"):
        read_signal_card(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "x", "signals": {"swap": {"live_sessions": "many"}}}))
    with pytest.raises(ModelError, match="unreadable signal card"):
        read_signal_card(bad)


def test_the_real_cases_come_from_the_clips_descriptions(real_material):
    from training.cards.signal_cards import real_cases

    cases = real_cases(real_material / "videos", 2.0)
    assert "live/mediapipe_face_detection_android_gpu" in cases["multi_face"]
    assert "live/liveportrait_d9" not in cases["multi_face"]
    assert cases["too_short"] == {"live/intel-sample-videos_head-pose-face-detection-female"}
    assert cases["swap"] == {"short_hamilton_clip"}


def test_a_rule_that_fires_falsely_on_too_many_real_live_sessions_only_informs():
    from pipeline.signals.card import SignalCard, SignalMeasurement

    card = SignalCard(
        "t", "test", {"occluded:left_eye": SignalMeasurement(18, 5), "occluded:nose": SignalMeasurement(18, 1)}
    )
    assert card.decides("occluded:left_eye") and card.decides("occluded:nose")  # measured: no limit given
    decides = card.decider(0.1)
    assert not decides("occluded:left_eye") and decides("occluded:nose") and not decides("a_new_rule")
