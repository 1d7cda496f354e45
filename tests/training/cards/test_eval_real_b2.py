"""The held-out real-face figures of a B2 beside the reference: per face and per session."""

from __future__ import annotations

import pytest

from training.cards.eval_real_b2 import figures


def test_faces_and_sessions_are_measured_for_both_scorers_from_the_same_faces():
    groups = {
        "live:live/a": {"b2": [0.1, 0.2, 0.3], "reference": [0.1, 0.1, 0.2]},
        "live:live/b": {"b2": [0.6, 0.2], "reference": [0.3, 0.2]},
        "attack:mixed/m@0-1s:print": {"b2": [0.5, 0.7], "reference": [0.9, 0.95]},
    }
    found = figures(groups, "mean", 5)
    # b2: of 5 x 2 live/attack face pairs, 0.6 > 0.5 and 0.6 < 0.7: 1 of 10 pairs ranked wrong
    assert found["b2"]["faces_roc_auc"] == pytest.approx(0.9)
    assert found["reference"]["faces_roc_auc"] == 1.0 and found["reference"]["sessions_roc_auc"] == 1.0
    assert found["b2"]["sessions"]["live:live/b"] == pytest.approx(0.4)
    # at 5% BPCER every live face stays under the threshold: the top live b2 face (0.6) lets the 0.5 attack through
    assert found["b2"]["faces_apcer_at_bpcer0.05"] == 0.5 and found["reference"]["faces_apcer_at_bpcer0.05"] == 0.0
    assert found["data"].startswith("5 faces of 2 held-out live clips") and "2 faces of 1 real attack" in found["data"]
