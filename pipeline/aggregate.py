"""How per-frame results become one session verdict: the spoof score, the ratios, the decision.

Pure functions over plain values, so every rule here is unit-tested without video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from pipeline.config import AggregateConfig, DecisionConfig
from pipeline.schema import DECISION_LIVE, DECISION_REVIEW, DECISION_SPOOF, STATUS_FAILED, STATUS_NO_FACE, STATUS_OK

REASON_SPOOF_SCORE = "spoof_score"
REASON_NO_FACE = "no_face"
REASON_SWAP = "swap"
REASON_STATIC = "static"
REASON_NO_BLINK = "no_blink"
REASON_MULTI_FACE = "multi_face"
REASON_OCCLUDED = "occluded:"  # followed by the region, e.g. occluded:mouth

_SEVERITY = {"ignore": 0, DECISION_LIVE: 0, DECISION_REVIEW: 1, DECISION_SPOOF: 2}


def pool_scores(scores: Sequence[float], method: Literal["mean", "median", "topk"] = "mean", topk: int = 5) -> float | None:
    """One session score from frame spoof probabilities: mean, median, or mean of the ``topk`` highest.

    >>> pool_scores([0.1, 0.2, 0.9], "topk", topk=2)
    0.55
    """
    if len(scores) == 0:
        return None
    values = np.asarray(scores, dtype=np.float64)
    if method == "mean":
        return float(values.mean())
    if method == "median":
        return float(np.median(values))
    if method == "topk":
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        return float(np.sort(values)[-topk:].mean())
    raise ValueError(f"pooling method must be mean, median or topk, got {method!r}")


def decide(score: float, threshold: float, review_band: float) -> str:
    """``spoof`` at or above ``threshold + band``, ``live`` at or below ``threshold - band``, else ``review``."""
    if score >= threshold + review_band:
        return DECISION_SPOOF
    if score <= threshold - review_band:
        return DECISION_LIVE
    return DECISION_REVIEW


def signal_reasons(signals: dict, multi_face_ratio: float, rules: DecisionConfig) -> list[tuple[str, str]]:
    """``(reason, action)`` of every session signal that fired, in a fixed order.

    ``signals`` holds what the analysis found: ``swap_detected``, ``static``, ``no_blink``
    and ``occluded_regions``; missing keys mean the signal was not computed.
    """
    fired = []
    if signals.get("swap_detected"):
        fired.append((REASON_SWAP, rules.swap))
    if signals.get("static"):
        fired.append((REASON_STATIC, rules.static))
    if signals.get("no_blink"):
        fired.append((REASON_NO_BLINK, rules.no_blink))
    fired += [(REASON_OCCLUDED + region, rules.occluded) for region in signals.get("occluded_regions") or []]
    if multi_face_ratio >= rules.multi_face_ratio:
        fired.append((REASON_MULTI_FACE, rules.multi_face))
    return [(reason, action) for reason, action in fired if action != "ignore"]


def aggregate_session(
    frames: Sequence[dict],
    *,
    threshold: float,
    config: AggregateConfig,
    rules: DecisionConfig | None = None,
    signals: dict | None = None,
    error: str | None = None,
) -> dict:
    """Session columns from its frame rows (each with ``n_faces`` and ``spoof_score`` or None)
    and its session signals (see :func:`signal_reasons`).

    A session with an ``error`` is ``failed`` with no decision; one where no sampled frame
    has a face is ``no_face`` and goes to ``review``. Otherwise the decision is the most
    severe of the spoof score's and the fired signals' actions, and ``reasons`` names the
    score (when it is not live) and each fired signal.
    """
    if error is not None:
        return {"status": STATUS_FAILED, "error": error, "frames_sampled": 0, "frames_scored": 0, "decision": None, "reasons": []}
    scores = [f["spoof_score"] for f in frames if f.get("spoof_score") is not None]
    n = len(frames)
    faces = sum(1 for f in frames if f["n_faces"] >= 1)
    row = {
        "error": None,
        "frames_sampled": n,
        "frames_scored": len(scores),
        "face_ratio": faces / n if n else 0.0,
        "multi_face_ratio": sum(1 for f in frames if f["n_faces"] >= 2) / n if n else 0.0,
        "spoof_score": pool_scores(scores, config.method, config.topk),
        "spoof_score_max": float(max(scores)) if scores else None,
    }
    signals = signals or {}
    row |= {k: signals.get(k) for k in ("swap_detected", "swap_at_s", "static", "blink_count", "occluded_regions")}
    if not scores:
        return row | {"status": STATUS_NO_FACE, "decision": DECISION_REVIEW, "reasons": [REASON_NO_FACE]}
    decision = decide(row["spoof_score"], threshold, config.review_band)
    reasons = [REASON_SPOOF_SCORE] if decision != DECISION_LIVE else []
    for reason, action in signal_reasons(signals, row["multi_face_ratio"], rules or DecisionConfig()):
        reasons.append(reason)
        if _SEVERITY[action] > _SEVERITY[decision]:
            decision = action
    return row | {"status": STATUS_OK, "decision": decision, "reasons": reasons}
