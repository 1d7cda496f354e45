"""``liveness calibrate``: session operating points chosen from an output's analysts' verdicts.

A threshold chosen on single photographs does not fit a session's pooled score. Here each
deciding scorer's session threshold is chosen on the sessions analysts have judged (the
``verdicts`` view, ``unsure`` left out; each session's latest row in ``sessions``), for a
target the user names:

- ``bpcer=0.05``: the lowest threshold (the most attacks caught) that decides at most 5% of
  the live verdicts' sessions an attack (``score >= threshold``);
- ``apcer=0.01``: the threshold with the fewest live sessions rejected that lets at most 1% of
  the spoof verdicts' sessions through.

What a point achieves (APCER and BPCER) comes with 95% bootstrap intervals (sessions
resampled within each class) and the verdict counts it rests on. A target is refused where
too few verdicts of the class it counts support it: by the rule of three, a rate of ``r``
measured with no error needs at least ``3 / r`` sessions to be bounded at ``r`` with 95%
confidence (60 live verdicts for ``bpcer=0.05``, 300 spoof verdicts for ``apcer=0.01``).

Signals too: for each rule that fired on the judged sessions (``swap``, ``occluded``, ...),
how often it fired on live and on spoof verdicts. Under a ``bpcer`` target, a rule whose
action rejects (``spoof`` or ``review``) and whose false fires on live verdicts alone exceed
the target (the interval's lower end above it, on enough live verdicts) is set to
``inform``: it is still named in ``reasons`` and no longer moves the decision.

The result is a complete scan config (the one given, with ``decision.thresholds``, the
changed actions and ``decision.calibration`` naming it) that ``liveness scan --config``
takes; run summaries and the report name the calibration in force.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.atomic import write_aside
from pipeline.config import ScanConfig
from pipeline.errors import InputError, UsageError
from pipeline.scoring.registry import ScorerEntry
from pipeline.session.aggregate import REASON_LINKED, deciding_scorers
from pipeline.storage import Store
from training.measure.evaluate_images import bootstrap_interval, rates_at
from training.measure.evaluate_sessions import latest_rows, pairs, verdict_labels
from training.measure.metrics import bpcer, bpcer_at_apcer, threshold_at_bpcer

CALIBRATIONS_DIR = "_calibrations"  # OUT/_calibrations/<id>.yaml: the configs `calibrate` wrote
RULE_OF_THREE = 3.0
REJECTING = ("spoof", "review")


@dataclass(frozen=True)
class Target:
    """The error rate a calibration holds to: ``bpcer`` (live people rejected) or ``apcer``
    (attacks accepted), at most ``rate``."""

    metric: str
    rate: float

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"bpcer=0.05"`` or ``"apcer=0.01"``; anything else is a :class:`UsageError`."""
        metric, _, value = text.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if metric not in ("bpcer", "apcer") or not 0 < rate < 1:
            raise UsageError(f"--target {text!r}: give bpcer=RATE or apcer=RATE with 0 < RATE < 1 (e.g. bpcer=0.05)")
        return cls(metric, rate)

    @property
    def counted(self) -> str:
        """The verdict class whose errors the target counts."""
        return "live" if self.metric == "bpcer" else "spoof"

    @property
    def verdicts_needed(self) -> int:
        """Sessions of :attr:`counted` needed to bound the rate at the target (rule of three)."""
        return math.ceil(RULE_OF_THREE / self.rate - 1e-9)

    def __str__(self) -> str:
        return f"{self.metric}={self.rate:g}"


@dataclass(frozen=True)
class OperatingPoint:
    """One deciding scorer's session threshold and what it achieves on the verdicts."""

    scorer: str
    threshold: float
    was: float  # the threshold it replaces: the card's for sessions (or photos), or an earlier calibration's
    apcer: float
    apcer_ci95: list[float | None]
    bpcer: float
    bpcer_ci95: list[float | None]
    live: int
    spoof: int


@dataclass(frozen=True)
class SignalRate:
    """How often one rule fired on the judged sessions, and the action it gets."""

    rule: str  # the decision key: swap, occluded, linked, ...
    action_before: str
    action: str
    fired_live: float | None
    fired_live_ci95: list[float | None]
    fired_spoof: float | None


@dataclass(frozen=True)
class Calibration:
    """A calibration: the target, each deciding scorer's point, each rule's rates and action."""

    target: str
    scan: str
    made_at: str
    live: int
    spoof: int
    points: tuple[OperatingPoint, ...]
    signals: tuple[SignalRate, ...]

    @property
    def label(self) -> str:
        """How run summaries and reports name it."""
        return f"{self.target} from {self.live} live and {self.spoof} spoof verdicts of {self.scan} ({self.made_at})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label}


def _rate(fired: np.ndarray) -> float | None:
    return round(float(fired.mean()), 4) if len(fired) else None


def rule_of(reason: str) -> str | None:
    """The ``decision`` key whose action a reason carries (None for the score and no_face)."""
    if reason.startswith("spoof_score") or reason == "no_face":
        return None
    if reason.startswith(REASON_LINKED):
        return "reapplied" if reason == f"{REASON_LINKED}reapplied" else "linked"
    return reason.split(":", 1)[0]


def _signals(rows: Sequence[dict], y: np.ndarray, target: Target, config: ScanConfig) -> list[SignalRate]:
    rules = sorted({r for row in rows for reason in row["reasons"] or () if (r := rule_of(reason)) is not None})
    out = []
    live = int((y == 0).sum())
    for rule in rules:
        fired = np.array([any(rule_of(x) == rule for x in row["reasons"] or ()) for row in rows], np.float64)
        before = getattr(config.decision, rule)
        interval = bootstrap_interval(lambda f, yy: float(f[yy == 0].mean()) if (yy == 0).any() else math.nan, fired, y)
        too_many = interval[0] is not None and interval[0] > target.rate
        supported = target.metric == "bpcer" and live >= target.verdicts_needed
        action = "inform" if supported and before in REJECTING and too_many else before
        out.append(SignalRate(rule, before, action, _rate(fired[y == 0]), interval, _rate(fired[y == 1])))
    return out


def _threshold(scores: np.ndarray, y: np.ndarray, target: Target) -> float:
    """The target's threshold on these sessions, within (0, 1]; an :class:`InputError` naming the
    best rate reachable where none is."""
    if target.metric == "bpcer":
        t = threshold_at_bpcer(scores, y, target.rate)
        if not math.isfinite(t):  # above every live score: just above the highest one
            t = float(np.nextafter(scores[y == 0].max(), 2.0))
        if t <= 1.0:
            return t
        best = bpcer(scores, y, 1.0)
    else:
        _, t = bpcer_at_apcer(scores, y, None, target.rate)
        if t > 0:
            return float(t)
        best = float(np.mean(scores[y == 1] < float(np.nextafter(0.0, 1.0))))
    raise InputError(
        f"no threshold in (0, 1] reaches {target} on these verdicts: the best reachable is {target.metric}={best:.4f}"
    )


def calibrate(scan: str, target: Target, config: ScanConfig, scorers: Sequence[ScorerEntry]) -> Calibration:
    """Choose each deciding scorer's session threshold (and each rule's action) for ``target``
    on the verdicts of the output ``scan``; see the module."""
    labels = verdict_labels(scan)
    rows_by_id = latest_rows(scan, set(labels))
    judged = [sid for sid in sorted(labels) if sid in rows_by_id and rows_by_id[sid]["status"] == "ok"]
    rows = [rows_by_id[sid] for sid in judged]
    y = np.array([labels[sid][0] == "spoof" for sid in judged], np.int64)
    live, spoof = int((y == 0).sum()), int((y == 1).sum())
    if not live or not spoof:
        have = f"{live} live and {spoof} spoof verdict(s) on scanned sessions"
        raise InputError(f"calibration needs verdicts of both classes: {scan} has {have}")
    counted = live if target.counted == "live" else spoof
    if counted < target.verdicts_needed:
        raise InputError(
            f"{target} needs at least {target.verdicts_needed} {target.counted} verdicts to be supported (rule of"
            f" three: {RULE_OF_THREE:g} / {target.rate:g}); {scan} has {counted}: add verdicts, or aim at a higher rate"
        )
    points = []
    by_name = {e.name: e for e in scorers}
    for name in deciding_scorers(scorers, config.decision.scorers):
        scores = np.array([dict(pairs(row["scores"])).get(name, math.nan) for row in rows], np.float64)
        if np.isnan(scores).any():
            raise InputError(f"scorer {name!r} has no session score on every judged session of {scan}")
        t = _threshold(scores, y, target)
        rates = rates_at(t)
        points.append(
            OperatingPoint(
                name,
                round(t, 6),
                by_name[name].threshold,
                round(rates["apcer"](scores, y), 4),
                bootstrap_interval(rates["apcer"], scores, y),
                round(rates["bpcer"](scores, y), 4),
                bootstrap_interval(rates["bpcer"], scores, y),
                live,
                spoof,
            )  # fmt: skip
        )
    made_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Calibration(str(target), scan, made_at, live, spoof, tuple(points), tuple(_signals(rows, y, target, config)))


def calibrated_config(calibration: Calibration, config: ScanConfig) -> ScanConfig:
    """``config`` with the calibration's thresholds and actions, naming it (validated as a whole)."""
    decision = config.decision.model_dump() | {
        "thresholds": {p.scorer: p.threshold for p in calibration.points},
        "calibration": calibration.label,
    }
    decision |= {s.rule: s.action for s in calibration.signals}
    return ScanConfig.model_validate(config.model_dump() | {"decision": decision})


def write_calibration(store: Store, calibration: Calibration, config: ScanConfig, to: Path | None) -> str:
    """Write the calibrated scan config (see :func:`write_scan_config`). Returns where it went."""
    config = calibrated_config(calibration, config)
    return write_scan_config(store, config, "calibrate", "calibration", calibration.label, calibration.made_at, to)


def write_scan_config(
    store: Store, config: ScanConfig, command: str, stem: str, label: str, made_at: str, to: Path | None
) -> str:
    """Write a complete scan config that ``liveness COMMAND`` made (``label`` says from what) to
    ``to`` (never over an existing file), else to ``OUT/_calibrations/STEM-<made_at>.yaml``;
    all or nothing. Returns where it went."""
    text = (
        f"# Written by `liveness {command}`: {label}.\n"
        "# A complete scan config: `liveness scan --config THIS_FILE ...`.\n"
        + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    if to is None:
        stamp = made_at.replace(":", "").replace("-", "")
        return store.write_bytes(f"{CALIBRATIONS_DIR}/{stem}-{stamp}.yaml", text.encode())
    if to.exists():
        raise UsageError(f"--write {to} exists: give a new file (nothing was written)")
    return str(write_aside(to, lambda tmp: tmp.write_text(text)))
