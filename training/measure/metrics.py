"""Evaluation metrics for the liveness classifier: the classification table and ISO/IEC 30107-3.

Conventions used by every function here:

* a **score** is the spoof probability in [0, 1] (higher = more likely an attack); only
  :func:`cross_entropy` (and so :func:`evaluation_report`) needs the scores to lie in
  [0, 1], the threshold-based and rank-based metrics accept any finite real score;
* a **label** is 1 for an attack presentation (spoof) and 0 for a bona fide (live)
  presentation;
* at threshold ``t`` a presentation is **classified as an attack iff** ``score >= t``;
* an **attack type** (PAI species, e.g. ``"print"``, ``"replay"``) is given per row;
  bona fide rows carry ``"none"`` and attack rows must carry something else.

Bad input (empty arrays, mismatched lengths, labels outside {0, 1}, non-finite scores,
attack types inconsistent with the labels, a NaN threshold) raises :class:`ValueError`
with a message naming the argument. A metric that is *undefined* for valid input (e.g.
BPCER with no bona fide presentation) returns ``float("nan")``;
:func:`evaluation_report` turns every NaN into ``None`` so that its result is strict JSON.

ISO/IEC 30107-3 definitions (with the decision rule above):

* ``APCER_PAIS(t)`` = proportion of attack presentations of species PAIS with
  ``score < t`` (accepted as bona fide);
* ``APCER(t)`` reported for a system = ``max`` over the species (:func:`apcer_max`);
* ``BPCER(t)`` = proportion of bona fide presentations with ``score >= t``;
* ``ACER(t)`` = ``(APCER_max(t) + BPCER(t)) / 2``;
* ``HTER(t)`` = ``(APCER_all(t) + BPCER(t)) / 2`` where ``APCER_all`` pools all attacks;
* ``BPCER_N`` = the lowest BPCER over thresholds with ``APCER_max <= 1/N``
  (BPCER20: ``APCER_max <= 5%``, BPCER100: ``APCER_max <= 1%``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import sklearn.metrics as skm

BONA_FIDE_TYPE = "none"
"""The attack type string carried by bona fide (label 0) rows."""

DEFAULT_EPS = 1e-7
"""Default probability clip for :func:`cross_entropy`."""

ArrayLike = Sequence[float] | np.ndarray
AttackTypes = Sequence[str] | np.ndarray


# --------------------------------------------------------------------------- validation


def _as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} must be finite; {int(bad.sum())} value(s) are NaN or infinite "
            f"(first at index {int(np.flatnonzero(bad)[0])})"
        )
    return arr


def _as_labels(labels: Any, n: int) -> np.ndarray:
    try:
        arr = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"labels must be 0 (bona fide) or 1 (attack): {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels is empty")
    if arr.size != n:
        raise ValueError(f"scores and labels have different lengths: {n} != {arr.size}")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        examples = sorted({float(v) for v in arr[bad][:5]})
        raise ValueError(
            f"labels must be 0 (bona fide) or 1 (attack); got {int(bad.sum())} other value(s), e.g. {examples}"
        )
    return arr.astype(np.int8)


def _validate(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores)
    return s, _as_labels(labels, s.size)


def _as_attack_types(attack_types: Any, labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(attack_types, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"attack_types must be 1-D, got shape {arr.shape}")
    if arr.size != labels.size:
        raise ValueError(f"attack_types and labels have different lengths: {arr.size} != {labels.size}")
    not_str = [i for i, v in enumerate(arr) if not isinstance(v, str)]
    if not_str:
        i = not_str[0]
        raise ValueError(
            f"attack_types must be strings; index {i} holds {arr[i]!r} ({len(not_str)} non-string value(s))"
        )
    is_none = arr == BONA_FIDE_TYPE
    bad_bf = np.flatnonzero((labels == 0) & ~is_none)
    if bad_bf.size:
        i = int(bad_bf[0])
        raise ValueError(
            f"attack_types of bona fide rows (label 0) must be {BONA_FIDE_TYPE!r}; "
            f"index {i} has {arr[i]!r} ({bad_bf.size} such row(s))"
        )
    bad_at = np.flatnonzero((labels == 1) & is_none)
    if bad_at.size:
        i = int(bad_at[0])
        raise ValueError(
            f"attack_types of attack rows (label 1) must not be {BONA_FIDE_TYPE!r}; "
            f"index {i} is an attack typed {BONA_FIDE_TYPE!r} ({bad_at.size} such row(s))"
        )
    return arr


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    if math.isnan(t):
        raise ValueError("threshold must not be NaN")
    return t


def _check_target(target: float) -> float:
    try:
        x = float(target)
    except (TypeError, ValueError):
        raise ValueError(f"target APCER must be a number, got {target!r}") from None
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"target APCER must be in [0, 1], got {target!r}")
    return x


# ----------------------------------------------------------------- classification table


def cross_entropy(probs: ArrayLike, labels: ArrayLike, eps: float = DEFAULT_EPS) -> float:
    """Mean binary cross-entropy (natural log) of spoof probabilities.

    ``-mean(y * log(p) + (1 - y) * log(1 - p))`` with ``p`` clipped to
    ``[eps, 1 - eps]`` so that a confident mistake costs ``-log(eps)`` (about 16.1 for
    the default ``eps = 1e-7``) instead of infinity. ``probs`` must lie in [0, 1].
    """
    p, y = _validate(probs, labels)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"probs must be probabilities in [0, 1]; index {i} is {p[i]!r} "
            f"({int(outside.sum())} value(s) outside) - pass sigmoid/softmax outputs, not logits"
        )
    p = np.clip(p, eps, 1.0 - eps)
    losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return float(np.mean(losses))


def _predicted(scores: ArrayLike, labels: ArrayLike, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and decisions (attack, label 1, when ``score >= threshold``), validated."""
    s, y = _validate(scores, labels)
    return y.astype(int), (s >= _check_threshold(threshold)).astype(int)


def accuracy(scores: ArrayLike, labels: ArrayLike, threshold: float = 0.5) -> float:
    """Proportion of presentations classified correctly: ``(TP + TN) / N`` (scikit-learn)."""
    y, pred = _predicted(scores, labels, threshold)
    return float(skm.accuracy_score(y, pred))


def recall(scores: ArrayLike, labels: ArrayLike, threshold: float = 0.5) -> float:
    """Recall on the spoof class (true positive rate, ``1 - APCER_all``): ``TP / (TP + FN)``.

    NaN when there is no attack presentation.
    """
    y, pred = _predicted(scores, labels, threshold)
    return float(skm.recall_score(y, pred, zero_division=np.nan))


def precision(scores: ArrayLike, labels: ArrayLike, threshold: float = 0.5) -> float:
    """Precision on the spoof class: ``TP / (TP + FP)``.

    NaN when nothing is classified as an attack.
    """
    y, pred = _predicted(scores, labels, threshold)
    return float(skm.precision_score(y, pred, zero_division=np.nan))


def f1(scores: ArrayLike, labels: ArrayLike, threshold: float = 0.5) -> float:
    """F1 on the spoof class: ``2 TP / (2 TP + FP + FN)`` (harmonic mean of P and R).

    This form is 0 (not NaN) when nothing is classified as an attack but attacks exist;
    NaN only when there is no attack and none is predicted.
    """
    y, pred = _predicted(scores, labels, threshold)
    return float(skm.f1_score(y, pred, zero_division=np.nan))


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (scikit-learn): the probability that a random attack scores
    above a random bona fide presentation, ties counting one half. NaN when only one class
    is present."""
    s, y = _validate(scores, labels)
    if np.unique(y).size < 2:
        return math.nan
    return float(skm.roc_auc_score(y, s))


def _candidate_thresholds(s: np.ndarray) -> np.ndarray:
    """Distinct scores ascending, then ``+inf``: every distinct operating point."""
    return np.append(np.unique(s), np.inf)


def _frac_below(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the proportion of ``sorted_scores`` strictly below it."""
    if sorted_scores.size == 0:
        return np.full(thresholds.shape, np.nan)
    return np.searchsorted(sorted_scores, thresholds, side="left") / sorted_scores.size


def _frac_at_or_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the proportion of ``sorted_scores`` at or above it.

    Computed as ``count / n`` (not ``1 - below / n``) so that equal rates are equal floats.
    """
    if sorted_scores.size == 0:
        return np.full(thresholds.shape, np.nan)
    n = sorted_scores.size
    return (n - np.searchsorted(sorted_scores, thresholds, side="left")) / n


def _require_both_classes(y: np.ndarray, what: str) -> None:
    n1 = int(np.sum(y == 1))
    if n1 == 0 or n1 == y.size:
        missing = "attack (label 1)" if n1 == 0 else "bona fide (label 0)"
        raise ValueError(f"{what} needs both classes; labels contain no {missing} presentation")


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with attack as the positive class: ``(fpr, tpr, thresholds)`` (scikit-learn,
    every operating point kept).

    ``thresholds`` are ``+inf`` followed by the distinct scores in *decreasing* order;
    ``fpr[i]`` (= BPCER) and ``tpr[i]`` (= 1 - APCER_all) are the proportions of bona
    fide and attack presentations with ``score >= thresholds[i]``. So the curve starts
    at (0, 0) and ends at (1, 1). Raises ValueError if either class is missing.
    """
    s, y = _validate(scores, labels)
    _require_both_classes(y, "roc_curve")
    fpr, tpr, thresholds = skm.roc_curve(y.astype(int), s, drop_intermediate=False)
    return fpr, tpr, thresholds


def det_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET curve: ``(apcer, bpcer, thresholds)`` with all attacks pooled: the ROC's points
    in *increasing* threshold order (the distinct scores, then ``+inf``).

    ``apcer[i]`` is the proportion of attacks with ``score < thresholds[i]`` and
    ``bpcer[i]`` the proportion of bona fide presentations with ``score >= thresholds[i]``.
    APCER rises from 0 to 1 and BPCER falls from 1 to 0. Raises ValueError if either class
    is missing.
    """
    s, y = _validate(scores, labels)
    _require_both_classes(y, "det_curve")
    fpr, tpr, thresholds = roc_curve(s, y)
    return (1.0 - tpr)[::-1], fpr[::-1], thresholds[::-1]


# ------------------------------------------------------------------------ ISO 30107-3


def apcer(scores: ArrayLike, labels: ArrayLike, attack_types: AttackTypes, threshold: float) -> dict[str, float]:
    """APCER per attack type at ``threshold``.

    For each attack type present among the attack rows, the proportion of that type's
    attack presentations with ``score < threshold`` (classified bona fide). Types with
    no attack presentation do not appear; with no attack at all the dict is empty.
    Keys are sorted.
    """
    s, y = _validate(scores, labels)
    types = _as_attack_types(attack_types, y)
    t = _check_threshold(threshold)
    out: dict[str, float] = {}
    attacks = y == 1
    for name in sorted(set(types[attacks].tolist())):
        sel = attacks & (types == name)
        out[name] = float(np.mean(s[sel] < t))
    return out


def apcer_max(scores: ArrayLike, labels: ArrayLike, attack_types: AttackTypes, threshold: float) -> float:
    """The system APCER of ISO/IEC 30107-3: the maximum of :func:`apcer` over attack types.

    NaN when there is no attack presentation.
    """
    per_type = apcer(scores, labels, attack_types, threshold)
    return max(per_type.values()) if per_type else math.nan


def _apcer_all(s: np.ndarray, y: np.ndarray, t: float) -> float:
    attacks = s[y == 1]
    return float(np.mean(attacks < t)) if attacks.size else math.nan


def bpcer(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """BPCER at ``threshold``: proportion of bona fide presentations with ``score >= threshold``.

    NaN when there is no bona fide presentation.
    """
    s, y = _validate(scores, labels)
    t = _check_threshold(threshold)
    bona = s[y == 0]
    return float(np.mean(bona >= t)) if bona.size else math.nan


def acer(scores: ArrayLike, labels: ArrayLike, attack_types: AttackTypes, threshold: float) -> float:
    """ACER at ``threshold``: ``(APCER_max + BPCER) / 2``. NaN if either is undefined."""
    worst = apcer_max(scores, labels, attack_types, threshold)
    return (worst + bpcer(scores, labels, threshold)) / 2.0


def hter(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """Half total error rate at ``threshold``: ``(APCER_all + BPCER) / 2``.

    ``APCER_all`` pools every attack presentation regardless of type (unlike ACER,
    which uses the worst type). NaN if either class is missing.
    """
    s, y = _validate(scores, labels)
    t = _check_threshold(threshold)
    return (_apcer_all(s, y, t) + bpcer(s, y, t)) / 2.0


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold: ``(eer, threshold)``, all attacks pooled.

    Method: walk the DET curve (:func:`det_curve`) over increasing thresholds
    ``t_0 < t_1 < ...`` (the distinct scores, then +inf); ``d_i = APCER_i - BPCER_i``
    rises from -1 to +1. Take the first ``i`` with ``d_i >= 0``. If ``d_i == 0`` the
    EER is ``APCER_i`` at threshold ``t_i``. Otherwise APCER and BPCER are linearly
    interpolated between points ``i-1`` and ``i`` (the straight DET segment, i.e. a
    random mix of the two operating points) to where they are equal:
    ``lam = -d_{i-1} / (d_i - d_{i-1})``, ``EER = APCER_{i-1} + lam (APCER_i - APCER_{i-1})``
    and the threshold is interpolated the same way,
    ``t_{i-1} + lam (t_i - t_{i-1})``, except that when ``t_i`` is +inf (the crossing
    lies above the highest score) the threshold is ``t_{i-1}``.

    Perfect separation gives ``(0.0, lowest attack score)``. ``(nan, nan)`` when
    either class is missing.
    """
    s, y = _validate(scores, labels)
    n1 = int(np.sum(y == 1))
    if n1 == 0 or n1 == y.size:
        return math.nan, math.nan
    a, b, t = det_curve(s, y)
    d = a - b
    i = int(np.argmax(d >= 0.0))  # exists: d[-1] == 1
    if d[i] == 0.0 or i == 0:
        return float(a[i]), float(t[i])
    lam = -d[i - 1] / (d[i] - d[i - 1])
    rate = a[i - 1] + lam * (a[i] - a[i - 1])
    thr = t[i - 1] if math.isinf(t[i]) else t[i - 1] + lam * (t[i] - t[i - 1])
    return float(rate), float(thr)


def bpcer_at_apcer(
    scores: ArrayLike,
    labels: ArrayLike,
    attack_types: AttackTypes | None,
    target: float,
) -> tuple[float, float]:
    """BPCER at a fixed APCER: ``(bpcer, threshold)``.

    Among the candidate thresholds (distinct scores, then +inf) whose ``APCER_max``
    (the worst attack type; all attacks pooled when ``attack_types`` is None) is
    ``<= target``, the lowest BPCER; the threshold returned is the *smallest* one
    reaching that BPCER (so, of equally good thresholds, the one with the lowest
    APCER). No interpolation. BPCER20 is ``target=0.05`` and BPCER100 ``target=0.01``.
    A feasible threshold always exists (the lowest score has APCER 0).
    ``(nan, nan)`` when either class is missing.
    """
    s, y = _validate(scores, labels)
    goal = _check_target(target)
    if attack_types is None:
        types = np.where(y == 1, "attack", BONA_FIDE_TYPE).astype(object)
    else:
        types = _as_attack_types(attack_types, y)
    n1 = int(np.sum(y == 1))
    if n1 == 0 or n1 == y.size:
        return math.nan, math.nan
    thresholds = _candidate_thresholds(s)
    attacks = y == 1
    worst = np.zeros(thresholds.shape)
    for name in set(types[attacks].tolist()):
        worst = np.maximum(worst, _frac_below(np.sort(s[attacks & (types == name)]), thresholds))
    bp = _frac_at_or_above(np.sort(s[~attacks]), thresholds)
    # k/n is correctly rounded, so e.g. 1/20 <= 0.05 holds exactly
    feasible = worst <= goal
    best = float(np.min(bp[feasible]))
    i = int(np.flatnonzero(feasible & (bp == best))[0])
    return best, float(thresholds[i])


_BPCER_METHOD = re.compile(r"^bpcer(\d+)$")


def choose_threshold(
    scores: ArrayLike,
    labels: ArrayLike,
    method: str = "eer",
    *,
    attack_types: AttackTypes | None = None,
) -> float:
    """Calibrate a decision threshold (on the validation split).

    ``method``:

    * ``"eer"``: the EER threshold of :func:`eer` (all attacks pooled);
    * ``"bpcerN"`` (e.g. ``"bpcer20"``, ``"bpcer100"``): the threshold of
      :func:`bpcer_at_apcer` with target ``1/N``, i.e. the lowest-BPCER threshold keeping
      ``APCER_max <= 1/N`` (per attack type when ``attack_types`` is given, else pooled).

    Raises ValueError for an unknown method or when either class is missing (no
    threshold can be calibrated then).
    """
    s, y = _validate(scores, labels)
    _require_both_classes(y, "choose_threshold")
    key = method.strip().lower()
    if key == "eer":
        return eer(s, y)[1]
    match = _BPCER_METHOD.match(key)
    if match and int(match.group(1)) >= 1:
        return bpcer_at_apcer(s, y, attack_types, 1.0 / int(match.group(1)))[1]
    raise ValueError(f"unknown threshold method {method!r}; use 'eer' or 'bpcerN' (e.g. 'bpcer20', 'bpcer100')")


# ---------------------------------------------------------------------------- report


def _json_float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def evaluation_report(
    scores: ArrayLike,
    labels: ArrayLike,
    attack_types: AttackTypes,
    threshold: float,
) -> dict[str, Any]:
    """Every metric above, at ``threshold``, in one JSON-serialisable dict.

    Keys: ``loss`` (cross-entropy; scores must be probabilities), ``accuracy``,
    ``recall``, ``precision``, ``f1``, ``roc_auc``, ``apcer`` (= APCER_max),
    ``apcer_per_attack`` (dict type -> APCER), ``bpcer``, ``acer``, ``hter``, ``eer``,
    ``eer_threshold``, ``bpcer20``, ``bpcer20_threshold``, ``bpcer100``,
    ``bpcer100_threshold``, ``threshold``, ``n_bona_fide``, ``n_attack``.

    Undefined values (NaN, e.g. ``roc_auc``/``eer``/``bpcer20`` with a single class,
    ``precision`` when nothing is predicted an attack) are ``None``. The threshold-free
    metrics (``roc_auc``, ``eer``, ``bpcer20``, ``bpcer100``) do not depend on
    ``threshold``; BPCER20/100 use APCER_max over ``attack_types``.
    """
    s, y = _validate(scores, labels)
    types = _as_attack_types(attack_types, y)
    t = _check_threshold(threshold)
    eer_rate, eer_thr = eer(s, y)
    b20, t20 = bpcer_at_apcer(s, y, types, 0.05)
    b100, t100 = bpcer_at_apcer(s, y, types, 0.01)
    per_type = apcer(s, y, types, t)
    metrics: dict[str, float] = {
        "loss": cross_entropy(s, y),
        "accuracy": accuracy(s, y, t),
        "recall": recall(s, y, t),
        "precision": precision(s, y, t),
        "f1": f1(s, y, t),
        "roc_auc": roc_auc(s, y),
        "apcer": max(per_type.values()) if per_type else math.nan,
        "bpcer": bpcer(s, y, t),
        "acer": acer(s, y, types, t),
        "hter": hter(s, y, t),
        "eer": eer_rate,
        "eer_threshold": eer_thr,
        "bpcer20": b20,
        "bpcer20_threshold": t20,
        "bpcer100": b100,
        "bpcer100_threshold": t100,
        "threshold": t,
    }
    report: dict[str, Any] = {k: _json_float(v) for k, v in metrics.items()}
    report["apcer_per_attack"] = {k: _json_float(v) for k, v in per_type.items()}
    report["n_bona_fide"] = int(np.sum(y == 0))
    report["n_attack"] = int(np.sum(y == 1))
    return report


def threshold_at_bpcer(scores: ArrayLike, labels: ArrayLike, target: float) -> float:
    """The lowest threshold (most attacks caught) whose BPCER stays at or under ``target``:
    an operating point set by how many real people may be rejected, usable where attacks
    are too few to calibrate on. Candidates are the distinct scores, then +inf.

    >>> threshold_at_bpcer([0.1, 0.2, 0.3, 0.9], [0, 0, 0, 1], 0.34)
    0.3
    """
    s, y = _validate(scores, labels)
    goal = _check_target(target)
    live = np.sort(s[y == 0])
    if live.size == 0:
        raise ValueError("threshold_at_bpcer needs bona fide scores")
    thresholds = _candidate_thresholds(s)
    feasible = _frac_at_or_above(live, thresholds) <= goal
    return float(thresholds[int(np.flatnonzero(feasible)[0])])
