"""Hand-computed checks of training.measure.metrics and the ROC/DET plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.measure.metrics import (
    accuracy,
    acer,
    apcer,
    apcer_max,
    bpcer,
    bpcer_at_apcer,
    choose_threshold,
    cross_entropy,
    det_curve,
    eer,
    evaluation_report,
    f1,
    hter,
    precision,
    recall,
    roc_auc,
    roc_curve,
)
from training.measure.plots import plot_roc_det

# Hand-worked example: 4 bona fide, 4 print attacks, 2 replay attacks.
#
#   sorted:  0.1b 0.2b 0.3b 0.35r 0.4p 0.6b 0.7p 0.8p 0.9p 0.95r
#
# At t = 0.5 (attack iff score >= 0.5):
#   print  below 0.5: {0.4}        -> APCER_print  = 1/4
#   replay below 0.5: {0.35}       -> APCER_replay = 1/2  -> APCER_max = 1/2
#   bona fide >= 0.5: {0.6}        -> BPCER = 1/4
#   ACER = (1/2 + 1/4) / 2 = 3/8;  APCER_all = 2/6, HTER = (1/3 + 1/4) / 2 = 7/24
#   TP = 4, FN = 2, FP = 1, TN = 3: acc 7/10, recall 4/6, precision 4/5, F1 8/11
#   AUC: bona fide below each attack 4+4+4+3 (print) + 3+4 (replay) = 22 of 24 pairs
# EER (pooled): at t=0.4 APCER=1/6, BPCER=1/4 (d=-1/12); at t=0.6 APCER=2/6, BPCER=1/4
#   (d=+1/12): lam = 1/2 -> EER = 1/6 + 1/2 * 1/6 = 1/4, threshold 0.4 + 1/2 * 0.2 = 0.5
# BPCER20 (APCER_max <= 5%): no attack may fall below t -> t <= 0.35; BPCER(0.35) = 1/4
BONA = [0.1, 0.2, 0.3, 0.6]
PRINT = [0.7, 0.8, 0.9, 0.4]
REPLAY = [0.35, 0.95]
SCORES = BONA + PRINT + REPLAY
LABELS = [0] * 4 + [1] * 6
TYPES = ["none"] * 4 + ["print"] * 4 + ["replay"] * 2


def test_iso_metrics_hand_computed() -> None:
    assert apcer(SCORES, LABELS, TYPES, 0.5) == {"print": 0.25, "replay": 0.5}
    assert apcer_max(SCORES, LABELS, TYPES, 0.5) == 0.5
    assert bpcer(SCORES, LABELS, 0.5) == 0.25
    assert acer(SCORES, LABELS, TYPES, 0.5) == pytest.approx(3 / 8)
    assert hter(SCORES, LABELS, 0.5) == pytest.approx(7 / 24)


def test_decision_rule_is_score_at_or_above_threshold() -> None:
    # at t = 0.4 the print attack scoring exactly 0.4 is detected; at 0.6 the bona fide
    # scoring exactly 0.6 is rejected
    assert apcer(SCORES, LABELS, TYPES, 0.4) == {"print": 0.0, "replay": 0.5}
    assert bpcer(SCORES, LABELS, 0.6) == 0.25
    assert bpcer(SCORES, LABELS, 0.600001) == 0.0
    # predicted attacks at t=0.6: 0.6 (bona fide), 0.7, 0.8, 0.9, 0.95 -> precision 4/5
    assert precision(SCORES, LABELS, 0.6) == 0.8
    assert accuracy(SCORES, LABELS, 0.6) == pytest.approx(0.7)  # TP 4, TN 3


def test_classification_table_hand_computed() -> None:
    assert accuracy(SCORES, LABELS, 0.5) == pytest.approx(0.7)
    assert recall(SCORES, LABELS, 0.5) == pytest.approx(4 / 6)
    assert precision(SCORES, LABELS, 0.5) == pytest.approx(0.8)
    assert f1(SCORES, LABELS, 0.5) == pytest.approx(8 / 11)
    assert roc_auc(SCORES, LABELS) == pytest.approx(22 / 24)


def test_cross_entropy_hand_computed_and_clipped() -> None:
    expected = -(math.log(0.8) + math.log(1 - 0.4)) / 2
    assert cross_entropy([0.8, 0.4], [1, 0]) == pytest.approx(expected)
    # a confident mistake is clipped to -log(eps), not infinite
    assert cross_entropy([0.0], [1], eps=1e-7) == pytest.approx(-math.log(1e-7))
    assert cross_entropy([1.0, 0.0], [1, 0]) == pytest.approx(-math.log(1 - 1e-7))


def test_eer_interpolated_hand_computed() -> None:
    rate, thr = eer(SCORES, LABELS)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.5)


def test_eer_exact_crossing() -> None:
    # bona fide 0.1 0.3 0.5 0.7, attacks 0.2 0.6 0.8 0.9:
    # t=0.6: APCER = 1/4 (0.2), BPCER = 1/4 (0.7) -> exact crossing at a score
    rate, thr = eer([0.1, 0.3, 0.5, 0.7, 0.2, 0.6, 0.8, 0.9], [0, 0, 0, 0, 1, 1, 1, 1])
    assert rate == 0.25
    assert thr == 0.6


def test_bpcer20_hand_computed() -> None:
    assert bpcer_at_apcer(SCORES, LABELS, TYPES, 0.05) == (0.25, 0.35)
    assert bpcer_at_apcer(SCORES, LABELS, TYPES, 0.01) == (0.25, 0.35)
    assert choose_threshold(SCORES, LABELS, "bpcer20", attack_types=TYPES) == 0.35
    assert choose_threshold(SCORES, LABELS, "eer") == pytest.approx(0.5)


def test_bpcer_at_apcer_uses_worst_attack_type() -> None:
    # target 1/3. Pooled: at t=0.7 two of six attacks (0.35, 0.4) are missed -> APCER
    # 1/3 allowed, BPCER 0. Per type: replay's 0.35 alone is APCER 1/2 > 1/3, so t must
    # stay <= 0.35 and BPCER is 1/4.
    assert bpcer_at_apcer(SCORES, LABELS, None, 1 / 3) == (0.0, 0.7)
    assert bpcer_at_apcer(SCORES, LABELS, TYPES, 1 / 3) == (0.25, 0.35)


def test_bpcer_at_apcer_returns_smallest_threshold_of_the_best_bpcer() -> None:
    # target 0.5: t=0.7 (print 1/4, replay 1/2) and t=0.8 (1/2, 1/2) are both feasible
    # with BPCER 0; the smaller threshold (lower APCER) is returned
    assert bpcer_at_apcer(SCORES, LABELS, TYPES, 0.5) == (0.0, 0.7)


def test_perfect_separation() -> None:
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    labels = [0, 0, 0, 1, 1, 1]
    assert roc_auc(scores, labels) == 1.0
    assert eer(scores, labels) == (0.0, 0.7)
    assert bpcer_at_apcer(scores, labels, None, 0.01) == (0.0, 0.7)
    assert accuracy(scores, labels, 0.5) == 1.0


def test_fully_inverted() -> None:
    scores = [0.8, 0.9, 0.1, 0.2]
    labels = [0, 0, 1, 1]
    assert roc_auc(scores, labels) == 0.0
    rate, thr = eer(scores, labels)
    assert rate == 1.0
    assert thr == 0.8  # every presentation misclassified there
    assert accuracy(scores, labels, 0.5) == 0.0


def test_ties() -> None:
    # all scores equal: AUC 1/2, EER 1/2 (interpolated between t=0.5 and +inf)
    assert roc_auc([0.5] * 4, [0, 0, 1, 1]) == 0.5
    assert eer([0.5] * 4, [0, 0, 1, 1]) == (0.5, 0.5)
    # one tied pair (0.5, 0.5) counts 1/2: (1 + 0.5 + 2) / 4
    scores, labels = [0.2, 0.5, 0.5, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == 0.875
    fpr, tpr, thr = roc_curve(scores, labels)
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.5, 0.2])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 1.0, 1.0])
    # t=0.5: APCER 0, BPCER 1/2; t=0.8: APCER 1/2, BPCER 0 -> EER 1/4 at 0.65
    rate, t = eer(scores, labels)
    assert rate == 0.25
    assert t == pytest.approx(0.65)


def test_det_curve_values() -> None:
    a, b, t = det_curve([0.2, 0.5, 0.5, 0.8], [0, 0, 1, 1])
    np.testing.assert_array_equal(t, [0.2, 0.5, 0.8, np.inf])
    np.testing.assert_array_equal(a, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(b, [1.0, 0.5, 0.0, 0.0])


def test_rank_auc_matches_trapezoid_and_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 1)  # many ties
    fpr, tpr, _ = roc_curve(scores, labels)
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairs)
    assert trapezoid == pytest.approx(pairs)


def test_bpcer_at_apcer_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    types = np.where(labels == 1, rng.choice(["print", "replay", "mask"], 200), "none")
    scores = np.round(rng.uniform(0, 1, 200) * 0.5 + 0.4 * labels, 2)
    for target in (0.0, 0.01, 0.05, 0.2):
        best = None
        for t in sorted(set(scores.tolist())):
            if apcer_max(scores, labels, types, t) <= target:
                b = bpcer(scores, labels, t)
                if best is None or b < best[0]:
                    best = (b, t)
        assert bpcer_at_apcer(scores, labels, types, target) == best


def test_eer_lies_between_bracketing_operating_points() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 150)
    scores = rng.uniform(0, 1, 150) * 0.7 + 0.3 * labels
    rate, thr = eer(scores, labels)
    a, b, t = det_curve(scores, labels)
    i = int(np.argmax(a - b >= 0))
    assert min(a[i - 1], b[i]) <= rate <= max(a[i], b[i - 1])
    assert t[i - 1] <= thr <= t[i]


def test_evaluation_report_hand_computed_and_json() -> None:
    r = evaluation_report(SCORES, LABELS, TYPES, 0.5)
    json.dumps(r, allow_nan=False)
    assert r["apcer"] == 0.5
    assert r["apcer_per_attack"] == {"print": 0.25, "replay": 0.5}
    assert r["bpcer"] == 0.25
    assert r["acer"] == pytest.approx(3 / 8)
    assert r["hter"] == pytest.approx(7 / 24)
    assert r["eer"] == pytest.approx(0.25)
    assert r["eer_threshold"] == pytest.approx(0.5)
    assert (r["bpcer20"], r["bpcer20_threshold"]) == (0.25, 0.35)
    assert r["bpcer100"] == 0.25
    assert r["roc_auc"] == pytest.approx(22 / 24)
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["f1"] == pytest.approx(8 / 11)
    assert r["loss"] == pytest.approx(cross_entropy(SCORES, LABELS))
    assert (r["threshold"], r["n_bona_fide"], r["n_attack"]) == (0.5, 4, 6)
    expected_keys = {
        "loss", "accuracy", "recall", "precision", "f1", "roc_auc", "apcer",
        "apcer_per_attack", "bpcer", "acer", "hter", "eer", "eer_threshold", "bpcer20",
        "bpcer20_threshold", "bpcer100", "bpcer100_threshold", "threshold",
        "n_bona_fide", "n_attack",
    }  # fmt: skip
    assert set(r) == expected_keys


def test_evaluation_report_single_class_is_honest() -> None:
    r = evaluation_report([0.1, 0.7, 0.2], [0, 0, 0], ["none"] * 3, 0.5)
    json.dumps(r, allow_nan=False)
    assert r["roc_auc"] is None
    assert r["eer"] is None and r["bpcer20"] is None
    assert r["apcer"] is None and r["acer"] is None and r["recall"] is None
    assert r["apcer_per_attack"] == {}
    assert r["bpcer"] == pytest.approx(1 / 3)
    assert r["precision"] == 0.0  # one predicted attack, wrong
    assert (r["n_bona_fide"], r["n_attack"]) == (3, 0)


def test_undefined_metrics_are_nan() -> None:
    assert math.isnan(precision([0.1, 0.2], [1, 0], 0.5))  # nothing predicted attack
    assert f1([0.1, 0.2], [1, 0], 0.5) == 0.0
    assert math.isnan(bpcer([0.9], [1], 0.5))
    assert math.isnan(apcer_max([0.1], [0], ["none"], 0.5))
    assert math.isnan(roc_auc([0.1, 0.9], [1, 1]))
    assert all(math.isnan(v) for v in eer([0.1, 0.9], [0, 0]))


def test_attack_type_absent_is_not_in_the_dict() -> None:
    assert apcer([0.1, 0.9], [0, 1], ["none", "print"], 0.5) == {"print": 0.0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: accuracy([], []), "scores is empty"),
        (lambda: accuracy([0.1, 0.2], [0]), "different lengths: 2 != 1"),
        (lambda: accuracy([0.1, 0.2], [0, 2]), r"labels must be 0 \(bona fide\) or 1"),
        (lambda: roc_auc([0.1, float("nan")], [0, 1]), "scores must be finite"),
        (lambda: roc_auc([[0.1, 0.2]], [0, 1]), "scores must be 1-D"),
        (lambda: cross_entropy([0.5, 1.5], [0, 1]), "probs must be probabilities"),
        (lambda: bpcer([0.1], [0], float("nan")), "threshold must not be NaN"),
        (lambda: apcer([0.1, 0.9], [0, 1], ["none"], 0.5), "attack_types and labels"),
        (lambda: apcer([0.1, 0.9], [0, 1], ["print", "print"], 0.5), "bona fide rows"),
        (lambda: apcer([0.1, 0.9], [0, 1], ["none", "none"], 0.5), "attack rows"),
        (lambda: apcer([0.1, 0.9], [0, 1], ["none", None], 0.5), "must be strings"),
        (lambda: bpcer_at_apcer([0.1, 0.9], [0, 1], None, 1.5), r"target APCER must be in"),
        (lambda: choose_threshold([0.1, 0.9], [0, 1], "f1"), "unknown threshold method 'f1'"),
        (lambda: choose_threshold([0.1, 0.9], [1, 1]), "no bona fide"),
        (lambda: roc_curve([0.1, 0.9], [0, 0]), "no attack"),
        (lambda: det_curve([0.1, 0.9], [1, 1]), "det_curve needs both classes"),
    ],
)
def test_bad_input_raises(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_plot_roc_det_writes_png(tmp_path) -> None:
    out = plot_roc_det(SCORES, LABELS, tmp_path / "sub" / "curves.png", threshold=0.5, title="t")
    data = out.read_bytes()
    assert out == tmp_path / "sub" / "curves.png"
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_plot_roc_det_single_class_raises(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs both classes"):
        plot_roc_det([0.1, 0.2], [0, 0], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
