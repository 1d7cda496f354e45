"""How per-frame results become one session verdict: the spoof score, the ratios, the decision.

Pure functions over the typed records, so every rule here is unit-tested without video.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from pipeline.config import AggregateConfig, DecisionConfig, ScanConfig
from pipeline.errors import ModelError
from pipeline.schema import (
    DECISION_LIVE,
    DECISION_REVIEW,
    DECISION_SPOOF,
    LINK_REAPPLIED,
    STATUS_FAILED,
    STATUS_NO_FACE,
    STATUS_OK,
)
from pipeline.scoring.registry import ScorerEntry, crop_specs, members
from pipeline.session.records import FrameRecords, SessionAggregate
from pipeline.signals.collector import SessionVerdicts

REASON_SPOOF_SCORE = "spoof_score"
REASON_NO_FACE = "no_face"
REASON_SWAP = "swap"
REASON_STATIC = "static"
REASON_NO_BLINK = "no_blink"
REASON_MULTI_FACE = "multi_face"
REASON_OTHER_FACE = "other_face"  # a face beside the main one scores as a spoof
REASON_OCCLUDED = "occluded:"  # followed by the region, e.g. occluded:mouth
REASON_TOO_SHORT = "too_short"  # too little time with a face for the temporal rules: never live
REASON_LINKED = "linked:"  # followed by the link kind, e.g. linked:same_face
REASON_PARTIAL_DECODE = "partial_decode"  # part of the video could not be decoded: the row's decode columns say what

_SEVERITY = {"ignore": 0, "inform": 0, DECISION_LIVE: 0, DECISION_REVIEW: 1, DECISION_SPOOF: 2}
Combine = Literal["most_severe", "mean"]


def coverage_weights(scored: np.ndarray) -> np.ndarray:
    """How many faces each scored face stands for (``scored``: a mask over a session's faces
    in time order): itself and every unscored face nearer to it than to another scored one
    (the earlier one on a tie).

    >>> coverage_weights(np.array([True, False, False, True, True])).tolist()
    [2, 2, 1]
    """
    index = np.flatnonzero(scored)
    if not len(index):
        return np.zeros(0, np.int64)
    position = np.arange(len(scored))
    right = np.clip(np.searchsorted(index, position), 0, len(index) - 1)
    left = np.clip(right - 1, 0, len(index) - 1)
    nearest = np.where(np.abs(position - index[left]) <= np.abs(index[right] - position), left, right)
    return np.bincount(nearest, minlength=len(index))


def pool_scores(
    scores: Sequence[float], method: Literal["mean", "median", "topk"] = "mean", topk: int = 5
) -> float | None:
    """One session score from its faces' spoof probabilities, in time order, NaN for a face not
    scored: mean, median, or mean of the ``topk`` highest.

    The scorers take faces on a schedule and densely after an event, so scored faces are not
    spread evenly in time. For the mean and the median each scored face stands for the
    unscored faces nearest to it (:func:`coverage_weights`): a dense stretch after a cut does
    not outweigh the rest of the session. With every face scored, all weigh alike.

    >>> pool_scores([0.1, 0.2, 0.9, float("nan")], "topk", topk=2)
    0.55
    >>> round(pool_scores([0.2, float("nan"), 0.6, 0.6]), 3)  # 0.2 stands for two faces
    0.4
    """
    every = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(every)
    values = every[scored]
    if len(values) == 0:
        return None
    weights = coverage_weights(scored)
    if method == "mean":
        return float(np.average(values, weights=weights))
    if method == "median":
        if (weights == weights[0]).all():
            return float(np.median(values))
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(weights[order])
        return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])
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


def signal_reasons(
    verdicts: SessionVerdicts, multi_face_ratio: float, rules: DecisionConfig, other_face: bool = False
) -> list[tuple[str, str]]:
    """``(reason, action)`` of every session signal that fired, in a fixed order; signals
    that were not computed (None) never fire. ``other_face``: a face beside the main one
    scored as a spoof (:func:`pool_others`)."""
    fired = []
    if verdicts.swap_detected:
        fired.append((REASON_SWAP, rules.swap))
    if verdicts.static:
        fired.append((REASON_STATIC, rules.static))
    if verdicts.no_blink:
        fired.append((REASON_NO_BLINK, rules.no_blink))
    if verdicts.too_short:
        fired.append((REASON_TOO_SHORT, rules.too_short))
    fired += [(REASON_OCCLUDED + region, rules.occluded) for region in verdicts.occluded_regions or ()]
    if multi_face_ratio >= rules.multi_face_ratio or verdicts.crowded_change:
        fired.append((REASON_MULTI_FACE, rules.multi_face))
    if other_face:
        fired.append((REASON_OTHER_FACE, rules.other_face))
    return [(reason, action) for reason, action in fired if action != "ignore"]


def _measured(fired: Sequence[tuple[str, str]], decides: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``fired`` with the actions of rules not measured on real footage turned to ``inform``."""
    return [(reason, action if decides(reason) else "inform") for reason, action in fired]


def aggregate_session(
    frames: FrameRecords,
    *,
    threshold: float | None,
    config: AggregateConfig,
    rules: DecisionConfig | None = None,
    verdicts: SessionVerdicts | None = None,
    error: str | None = None,
    score_reason: str = REASON_SPOOF_SCORE,
    linked: Sequence[str] = (),
    partial_decode: bool = False,
    decides: Callable[[str], bool] | None = None,
    review_band: float | None = None,
    other_face: bool = False,
) -> SessionAggregate:
    """The session columns that come from its frames (their faces and the deciding spoof
    score, ``frames.spoof_score``) and its signal verdicts.

    A session with an ``error`` is ``failed`` with no decision; one where no sampled frame
    has a face is ``no_face`` and goes to ``review``. Otherwise the decision is the most
    severe of the spoof score's (against ``threshold`` plus or minus ``review_band``, None:
    ``config.review_band``; none when no scorer decides) and the
    fired signals' actions, and ``reasons`` names the score (``score_reason``, when it is
    not live) and each fired signal. ``linked`` holds the kinds of links to earlier sessions
    found for this one (``linked:<kind>``, action ``rules.linked``; ``rules.reapplied`` for the
    same applicant's face), with or without a face;
    ``partial_decode`` says part of the video could not be decoded (action ``rules.partial_decode``).
    ``decides`` says which rules may move the decision (:meth:`pipeline.signals.card.SignalCard.decides`:
    those measured on real footage); the others only inform. None: every rule may.
    ``other_face``: a face beside the main one scored as a spoof (action ``rules.other_face``).
    """
    rules = rules or DecisionConfig()
    link_actions = (
        (kind, rules.reapplied if kind == LINK_REAPPLIED else rules.linked) for kind in dict.fromkeys(linked)
    )
    about_file: list[tuple[str, str]] = [
        (f"{REASON_LINKED}{kind}", action) for kind, action in link_actions if action != "ignore"
    ]
    if partial_decode and rules.partial_decode != "ignore":
        about_file.insert(0, (REASON_PARTIAL_DECODE, rules.partial_decode))
    if decides is not None:
        about_file = _measured(about_file, decides)
    if error is not None:
        return SessionAggregate(status=STATUS_FAILED, error=error)
    deciding = ~np.isnan(frames.spoof_score)
    scored = deciding | np.any([~np.isnan(v) for v in frames.scores.values()] or [deciding], axis=0)
    scores = frames.spoof_score[deciding].astype(np.float64)
    on_faces = frames.spoof_score[frames.has_face]  # NaN where a face was not scored: pooling weighs by time
    n = len(frames)
    faces = int(np.count_nonzero(frames.n_faces >= 1))
    multi_face_ratio = float(np.count_nonzero(frames.n_faces >= 2)) / n if n else 0.0
    base = SessionAggregate(
        status=STATUS_NO_FACE,
        frames_sampled=n,
        frames_scored=int(np.count_nonzero(scored)),
        face_ratio=faces / n if n else 0.0,
        multi_face_ratio=multi_face_ratio,
        spoof_score=pool_scores(on_faces.tolist(), config.method, config.topk),
        spoof_score_max=float(scores.max()) if len(scores) else None,
        threshold=threshold if len(scores) else None,
    )
    if not faces or not base.frames_scored:
        worst = max([DECISION_REVIEW, *(action for _, action in about_file)], key=_SEVERITY.__getitem__)
        return replace(base, decision=worst, reasons=(REASON_NO_FACE, *(reason for reason, _ in about_file)))
    decision, reasons = DECISION_LIVE, []
    if base.spoof_score is not None and threshold is not None:
        decision = decide(base.spoof_score, threshold, config.review_band if review_band is None else review_band)
        reasons = [score_reason] if decision != DECISION_LIVE else []
    fired = signal_reasons(verdicts or SessionVerdicts(), multi_face_ratio, rules, other_face)
    for reason, action in [*(fired if decides is None else _measured(fired, decides)), *about_file]:
        reasons.append(reason)
        if _SEVERITY[action] > _SEVERITY[decision]:
            decision = action
    return replace(base, status=STATUS_OK, decision=decision, reasons=tuple(reasons))


@dataclass(frozen=True)
class ScoreDecision:
    """What the deciding scorers make of one face or session: the decision the scores alone
    give, the score it rests on (0 = real, 1 = spoof), and the scorer that fired (None: live)."""

    decision: str
    spoof_score: float | None
    fired: str | None
    scorers: tuple[str, ...] = ()  # whose scores make spoof_score (one, or the deciders for mean)


def spread_scores(
    scheduled: np.ndarray, first: Mapping[str, np.ndarray], rest: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every face's score by scorer, NaN where it was not scored: ``first`` holds the scheduled
    faces' scores (``scheduled``: a mask over the session's faces), ``rest`` the other faces'
    when the session was refined (the deciding scorers' only: the others keep their schedule).

    >>> spread_scores(np.array([True, False, True]), {"b2": np.array([0.25, 0.5])})["b2"].tolist()
    [0.25, nan, 0.5]
    """
    out = {}
    for name, values in first.items():
        spread = np.full(len(scheduled), np.nan, np.float32)
        spread[scheduled] = values
        if rest is not None and name in rest:
            spread[~scheduled] = rest[name]
        out[name] = spread
    return out


def deciding_scorers(entries: Sequence[ScorerEntry], deciders: Sequence[str] | None) -> list[str]:
    """The names of the scorers that decide (default: those measured on real data)."""
    names = [e.name for e in entries if e.measured_on_real_data] if deciders is None else list(deciders)
    unknown = [n for n in names if n not in {e.name for e in entries}]
    if unknown:
        raise ModelError(
            f"deciding scorers {unknown} are not registered; registered: {', '.join(e.name for e in entries)}"
        )
    return names


def near_threshold(
    scores: Mapping[str, float | None],
    entries: Sequence[ScorerEntry],
    *,
    band: float,
    review_band: float,
    deciders: Sequence[str] | None = None,
) -> bool:
    """Whether a deciding scorer's session score lies within ``band`` of a decision edge (its
    threshold plus or minus ``review_band``, where :func:`decide` changes its answer): there
    one more scored face may change the decision, so every face is worth scoring
    (``scoring.refine_band``)."""
    by_name = {e.name: e for e in entries}
    scored = [(s, by_name[n]) for n in deciding_scorers(entries, deciders) if (s := scores.get(n)) is not None]
    return any(
        min(abs(s - e.threshold - e.band(review_band)), abs(s - e.threshold + e.band(review_band))) < band
        for s, e in scored
    )


def worth_refining(
    scheduled: np.ndarray, first: Mapping[str, np.ndarray], entries: Sequence[ScorerEntry], config: ScanConfig
) -> bool:
    """Whether a session whose scheduled faces (``scheduled``: a mask over its faces) were
    scored ``first`` should have every other face scored too: some are left and a deciding
    scorer's pooled score lies within ``scoring.refine_band`` of a decision edge."""
    band, a = config.scoring.refine_band, config.aggregate
    if band is None or bool(scheduled.all()):
        return False
    pooled = {name: pool_scores(v.tolist(), a.method, a.topk) for name, v in spread_scores(scheduled, first).items()}
    return near_threshold(pooled, entries, band=band, review_band=a.review_band, deciders=config.decision.scorers)


def refinement_crops(entries: Sequence[ScorerEntry], config: ScanConfig) -> set[str]:
    """The crop keys a refinement round scores: the deciding scorers' (``decision.scorers``).
    The other scorers' scores only inform, and stay at their schedule."""
    deciders = members(entries, deciding_scorers(entries, config.decision.scorers))
    return {spec.key for spec in crop_specs([e for e in entries if e.name in deciders])}


def decide_scores(
    scores: Mapping[str, float | None],
    entries: Sequence[ScorerEntry],
    *,
    review_band: float,
    deciders: Sequence[str] | None = None,
    combine: Combine = "most_severe",
) -> ScoreDecision:
    """Combine the deciding scorers' scores (each against its own threshold) into one decision.

    ``deciders`` names the scorers that may decide (default: those measured on real data).
    ``most_severe``: each decider's own ``spoof`` / ``review`` / ``live`` (its threshold plus or
    minus its band: its operating point's, else ``review_band``), the most severe wins and its
    score is the one reported. ``mean``: the mean of the deciders' scores against the mean of
    their thresholds and bands.
    With no decider (or no score), the scores decide nothing: ``live`` with no score fired.
    """
    by_name = {e.name: e for e in entries}
    present = [(n, s) for n in deciding_scorers(entries, deciders) if (s := scores.get(n)) is not None]
    if not present:
        return ScoreDecision(DECISION_LIVE, None, None)
    if combine == "mean":
        score = float(np.mean([s for _, s in present]))
        threshold = float(np.mean([by_name[n].threshold for n, _ in present]))
        decision = decide(score, threshold, float(np.mean([by_name[n].band(review_band) for n, _ in present])))
        used = tuple(n for n, _ in present)
        return ScoreDecision(decision, score, None if decision == DECISION_LIVE else "mean", used)
    ranked = sorted(
        (
            (_SEVERITY[decide(s, by_name[n].threshold, by_name[n].band(review_band))], s - by_name[n].threshold, n, s)
            for n, s in present
        ),
        reverse=True,
    )
    level, _, name, score = ranked[0]
    decision = next(d for d in (DECISION_LIVE, DECISION_REVIEW, DECISION_SPOOF) if _SEVERITY[d] == level)
    return ScoreDecision(decision, float(score), None if decision == DECISION_LIVE else name, (name,))


def pool_others(others: Mapping[str, np.ndarray], topk: int) -> dict[str, float]:
    """Each scorer's score of the faces beside the main one (``others``: their spoof
    probabilities by scorer), the mean of their ``topk`` highest; empty when none was scored.
    A photo or a phone held up for a moment among live bystanders still counts, where a mean
    would dilute it. Judged by :func:`decide_scores` as the main face's scores are, the rule
    ``other_face`` fires where that says ``spoof`` (at the spoof edge: a bystander's face
    scored in between leaves the decision to the main face).

    >>> pool_others({"reference": np.array([0.125, 0.75, 0.5, 0.25])}, topk=2)
    {'reference': 0.625}
    """
    return {
        name: value
        for name, values in others.items()
        if (value := pool_scores(values.tolist(), "topk", topk)) is not None
    }
