"""``liveness promote``: a newly trained B2 earns the right to decide, or stays informing.

After ``mine`` and ``train`` on an archive, the new B2 is measured on the archive's
**held-out verdicts**: analysts' live and spoof verdicts on sessions the training never
held (not mined into train or val, and of no subject, i.e. identity cluster, that was).
Every held-out session is re-read at the frames its scan scored (``frames_per_session``
of them, spread over it) and scored there by the new B2 and the reference, so both are
judged on the same faces; session scores are pooled as the scan pools them.

A **fusion** of the two (logistic regression on their per-face logits, one weight per
session: :mod:`training.fit.fusion`) is fitted on the same verdicts by two-fold
cross-fitting over subjects, so every session's fused score comes from weights fitted
without it; its card (``kind: fusion``) holds the weights fitted on all of them.

Each of the three is measured alike: ROC-AUC and APCER at the deployment's BPCER (the
target), with 95% bootstrap intervals. The best of the B2 and the fusion is **promoted**
when it lets fewer attacks through at that BPCER than the reference and ranks no worse
(ROC-AUC). Only the promoted scorer's card receives the measurement (``real_evaluation``)
and its session operating point, and the written scan config (a calibration, as
``liveness calibrate`` writes) names it in ``decision.scorers`` with its threshold at the
target. Otherwise the reference keeps deciding, at its own threshold on these verdicts, and
the B2 keeps informing; either way ``promotion.json`` beside the B2 says why.

Too few held-out verdicts to measure the target is refused (exit 2) with the number
needed: by the rule of three, ``3 / bpcer`` live verdicts, and ``1 / bpcer`` spoof verdicts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_aside
from pipeline.checkpoint import CARD_FILE, write_card
from pipeline.config import ScanConfig
from pipeline.errors import InputError, ModelError, UsageError
from pipeline.reports.query import connect, run_query
from pipeline.scoring.fusion import FusionCard, FusionMember
from pipeline.scoring.model import ModelCard, RealEvaluation, SessionOperatingPoint
from pipeline.scoring.registry import ScorerEntry, Scorers, crop_specs, resolve_scorers, scorer_digest
from pipeline.session.aggregate import pool_scores
from pipeline.storage import Store
from training.data.mine import MINED_SESSIONS, read_crops, scored_frames, spread
from training.fit.fusion import FusionFit, fit_fusion
from training.measure.calibrate import RULE_OF_THREE, write_scan_config
from training.measure.evaluate_images import apcer_at_bpcer, bootstrap_interval, rates_at
from training.measure.evaluate_sessions import check_recordable, latest_rows, update_card, verdict_labels
from training.measure.metrics import roc_auc, threshold_at_bpcer

log = logging.getLogger(__name__)

PROMOTION_JSON = "promotion.json"
FUSION = "fusion"
CANDIDATES = ("b2", FUSION)  # the scorers that may take the reference's place
FOLDS = 2


@dataclass(frozen=True)
class HeldOut:
    """The held-out verdict sessions: ids, labels (1 spoof), subjects, sources and runs."""

    session_ids: list[str]
    labels: np.ndarray
    subjects: list[str]
    sources: list[str]
    runs: list[str]

    @property
    def live(self) -> int:
        return int((self.labels == 0).sum())

    @property
    def spoof(self) -> int:
        return int((self.labels == 1).sum())


def needed(bpcer: float) -> tuple[int, int]:
    """Live and spoof held-out verdicts a promotion at ``bpcer`` needs (rule of three for BPCER,
    one attack per step of ``bpcer`` for APCER)."""
    return math.ceil(RULE_OF_THREE / bpcer - 1e-9), math.ceil(1 / bpcer - 1e-9)


def _trained_on(data: Sequence[Path]) -> tuple[set[str], set[str]]:
    """Sessions and subjects the training data held in train or val (``mined_sessions.csv``)."""
    sessions: set[str] = set()
    subjects: set[str] = set()
    for folder in data:
        path = Path(folder) / MINED_SESSIONS
        if not path.is_file():
            raise InputError(f"--data {folder}: no {MINED_SESSIONS} (give the folders `liveness mine` wrote)")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["split"] in ("train", "val"):
                    sessions.add(row["session_id"])
                    subjects.add(row["subject"])
    return sessions, subjects


def held_out_verdicts(scan: str, data: Sequence[Path]) -> HeldOut:
    """The verdict sessions of ``scan`` (latest rows, status ok) that the training never held."""
    sessions, subjects = _trained_on(data)
    labels = verdict_labels(scan)
    rows = latest_rows(scan, set(labels))
    clusters = {r["session_id"]: r["cluster_id"] for r in run_query(scan, "select * from clusters").to_pylist()}
    kept = []
    for sid in sorted(labels):
        row = rows.get(sid)
        subject = clusters.get(sid) or f"session:{sid}"
        if row is None or row["status"] != "ok" or sid in sessions or subject in subjects:
            continue
        kept.append((sid, labels[sid][0] == "spoof", subject, row["source"], row["run_id"]))
    return HeldOut(
        [k[0] for k in kept],
        np.array([k[1] for k in kept], np.int64),
        [k[2] for k in kept],
        [k[3] for k in kept],
        [k[4] for k in kept],
    )


@dataclass
class FaceScores:
    """Every scorer's spoof probability per re-read face, and which session each face is of."""

    session_index: np.ndarray  # (F,) index into the held-out sessions
    scores: dict[str, np.ndarray]  # scorer -> (F,)


def score_held_out(
    held: HeldOut, scan: str, entries: Sequence[ScorerEntry], *, frames_per_session: int, max_pixels: int
) -> tuple[FaceScores, list[str]]:
    """Re-read each held-out session at up to ``frames_per_session`` of its scored faces and
    score them with every scorer; returns the faces' scores and the sessions that could not
    be re-read."""
    scorers = Scorers(entries)
    specs = crop_specs(entries)
    frames = scored_frames(connect(scan), list(zip(held.session_ids, held.runs, strict=True)))
    index: list[int] = []
    scores: dict[str, list[np.ndarray]] = {e.name: [] for e in entries}
    unreadable = []
    for i, (sid, source) in enumerate(zip(held.session_ids, held.sources, strict=True)):
        faces = frames.get(sid, [])
        wanted = [(t, box) for t, box, _ in (faces[k] for k in spread(len(faces), frames_per_session))]
        try:
            got = read_crops(source, wanted, specs, max_pixels) if wanted else []
        except (OSError, ValueError) as exc:
            log.warning("promote: cannot re-read session %s: %s", sid, exc)
            got = []
        if not got:
            unreadable.append(sid)
            continue
        batch = {spec.key: np.stack([crops[spec.key] for _, crops, _ in got]) for spec in specs}
        for name, probs in scorers(batch).items():
            scores[name].append(probs)
        index += [i] * len(got)
    return FaceScores(np.array(index, np.int64), {n: np.concatenate(v) for n, v in scores.items()}), unreadable


def _fold(subject: str) -> int:
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:4], "big") % FOLDS


def cross_fitted_fusion(faces: FaceScores, held: HeldOut, members: Sequence[str]) -> tuple[np.ndarray, FusionFit]:
    """Per-face fused probabilities, each from weights fitted on the other fold's subjects
    (a fold holding one class only borrows the fit on all), and the fit on all of them."""
    sessions = [held.session_ids[i] for i in faces.session_index]
    y = held.labels[faces.session_index]
    folds = np.array([_fold(held.subjects[i]) for i in faces.session_index])
    every = fit_fusion({m: faces.scores[m] for m in members}, y, sessions)
    fused = np.empty(len(y))
    for fold in range(FOLDS):
        test, train = folds == fold, folds != fold
        fit = every
        if len(set(y[train].tolist())) == 2:
            fit = fit_fusion(
                {m: faces.scores[m][train] for m in members}, y[train], np.asarray(sessions)[train].tolist()
            )
        fused[test] = fit({m: faces.scores[m][test] for m in members})
    return fused, every


def session_scores(per_face: np.ndarray, faces: FaceScores, n: int, config: ScanConfig) -> np.ndarray:
    """Each session's pooled score (the scan's pooling), NaN for a session with no face."""
    out = np.full(n, np.nan)
    for i in range(n):
        values = per_face[faces.session_index == i]
        if len(values):
            out[i] = pool_scores(values.tolist(), config.aggregate.method, config.aggregate.topk)
    return out


def apcer_key(bpcer: float) -> str:
    """The name of the figure APCER at ``bpcer``, e.g. ``apcer_at_bpcer0.05``."""
    return f"apcer_at_bpcer{bpcer:g}"


def measure(scores: np.ndarray, y: np.ndarray, bpcer: float) -> dict[str, Any]:
    """ROC-AUC and APCER at ``bpcer`` (95% bootstrap intervals), and the threshold there."""
    metric = apcer_at_bpcer(bpcer)
    threshold = threshold_at_bpcer(scores, y, bpcer)
    if not math.isfinite(threshold):
        threshold = float(np.nextafter(scores[y == 0].max(), 2.0))
    return {
        "roc_auc": round(roc_auc(scores, y), 4),
        "roc_auc_ci95": bootstrap_interval(roc_auc, scores, y),
        apcer_key(bpcer): round(metric(scores, y), 4),
        "apcer_at_bpcer_ci95": bootstrap_interval(metric, scores, y),
        "threshold": round(min(threshold, 1.0), 6),
        "bpcer_at_threshold": round(rates_at(threshold)["bpcer"](scores, y), 4),
    }


@dataclass(frozen=True)
class Promotion:
    """What ``liveness promote`` measured and chose."""

    scan: str
    model: str
    bpcer: float
    live: int
    spoof: int
    sessions_unreadable: list[str]
    faces: int
    measured: dict[str, dict[str, Any]]  # scorer -> its figures on the held-out verdicts
    decides: str  # the scorer the written config lets decide
    promoted: bool
    why: str
    fusion: dict[str, Any]
    made_at: str

    @property
    def apcer_key(self) -> str:
        return apcer_key(self.bpcer)

    @property
    def data(self) -> str:
        return (
            f"{self.live} live and {self.spoof} spoof held-out verdict sessions of {self.scan} (sessions and subjects"
            f" the training never held), {self.faces} faces re-read at the scan's frames"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"data": self.data}


def choose(measured: dict[str, dict[str, Any]], key: str) -> tuple[str, str]:
    """The scorer that decides and why: the better of the candidates when it beats the reference
    (fewer attacks through at the target BPCER, ROC-AUC no lower), else the reference."""
    ref = measured["reference"]
    best = min(CANDIDATES, key=lambda n: (measured[n][key], -measured[n]["roc_auc"]))
    mine = measured[best]
    if mine[key] < ref[key] and mine["roc_auc"] >= ref["roc_auc"]:
        return best, (
            f"{best} lets {mine[key]:.1%} of attacks through where the reference lets {ref[key]:.1%}"
            f" (ROC-AUC {mine['roc_auc']:.3f} against {ref['roc_auc']:.3f})"
        )
    return "reference", (
        f"neither beats the reference ({ref[key]:.1%} of attacks through, ROC-AUC {ref['roc_auc']:.3f}); best"
        f" candidate {best}: {mine[key]:.1%}, ROC-AUC {mine['roc_auc']:.3f}. The b2 keeps informing"
    )


def check_promotable(model_dir: Path, fusion_dir: Path) -> ModelCard:
    """Refuse, before any work: a shipped or card-less B2, or a fusion folder already there."""
    check_recordable(model_dir)
    card = json.loads((model_dir / CARD_FILE).read_text())
    if card.get("kind", "timm") != "timm":
        raise ModelError(f"--model {model_dir} is not a B2 checkpoint (its card's kind is {card.get('kind')!r})")
    if fusion_dir.exists():
        raise UsageError(f"--fusion-out {fusion_dir} exists: give a new folder (nothing was written)")
    return ModelCard.model_validate(card)


def promote(
    scan: str,
    model_dir: Path,
    data: Sequence[Path],
    config: ScanConfig,
    *,
    bpcer: float,
    fusion_dir: Path,
    frames_per_session: int = 16,
) -> Promotion:
    """Measure the B2 at ``model_dir`` (trained on ``data``) against the reference and their
    fusion on the held-out verdicts of ``scan``; see the module. Writes nothing."""
    held = held_out_verdicts(scan, data)
    live_needed, spoof_needed = needed(bpcer)
    if held.live < live_needed or held.spoof < spoof_needed:
        raise InputError(
            f"promotion at bpcer={bpcer:g} needs at least {live_needed} live and {spoof_needed} spoof held-out"
            f" verdicts (sessions the training never held); {scan} has {held.live} live and {held.spoof} spoof:"
            " add verdicts on sessions of other people, or mine with a larger test_share"
        )
    reference = config.scorers["reference"].model if "reference" in config.scorers else None
    entries = resolve_scorers({"b2": model_dir, "reference": reference})
    faces, unreadable = score_held_out(
        held, scan, entries, frames_per_session=frames_per_session, max_pixels=config.decode.max_pixels
    )
    fused, fit = cross_fitted_fusion(faces, held, ("reference", "b2"))
    per_face = faces.scores | {FUSION: fused}
    n = len(held.session_ids)
    scored = np.isin(np.arange(n), faces.session_index)  # the sessions re-read
    y = held.labels[scored]
    measured = {
        name: measure(session_scores(values, faces, n, config)[scored], y, bpcer) for name, values in per_face.items()
    }
    decides, why = choose(measured, apcer_key(bpcer))
    digests = {e.name: (scorer_digest(e), e.card.version) for e in entries}
    return Promotion(
        scan=scan,
        model=str(model_dir),
        bpcer=bpcer,
        live=int((y == 0).sum()),
        spoof=int((y == 1).sum()),
        sessions_unreadable=unreadable[:50],
        faces=len(faces.session_index),
        measured=measured,
        decides=decides,
        promoted=decides != "reference",
        why=why,
        fusion={
            "weights": fit.weights,
            "bias": fit.bias,
            "members": {n: {"digest": d, "version": v} for n, (d, v) in digests.items()},
        },
        made_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _evaluation(promotion: Promotion, name: str) -> RealEvaluation:
    figures = promotion.measured[name]
    return RealEvaluation(
        data=promotion.data + " (the fusion's: out of fold)" * (name == FUSION),
        threshold_data=f"the same sessions: the lowest threshold with BPCER <= {promotion.bpcer:g}",
        measured_at=promotion.made_at,
        metrics=figures,
    )


def _session_point(promotion: Promotion, name: str, config: ScanConfig) -> SessionOperatingPoint:
    figures = promotion.measured[name]
    return SessionOperatingPoint(
        threshold=figures["threshold"],
        review_band=0.0,
        pooling=config.aggregate.method,
        method=f"liveness promote: the lowest session threshold with BPCER <= {promotion.bpcer:g} on held-out verdicts",
        threshold_data=promotion.data,
        data=promotion.data,
        measured_at=promotion.made_at,
        metrics=figures,
    )


def write_promotion(
    promotion: Promotion, model_dir: Path, fusion_dir: Path, config: ScanConfig, store: Store, to: Path | None
) -> str:
    """Write the fusion's card, the figures into the B2's card (its measurement only when it is
    promoted alone), ``promotion.json``, and the scan config that lets the chosen scorer decide.
    Returns where the config went."""
    fusion_card = FusionCard(
        kind="fusion",
        version=f"fusion-{promotion.made_at[:10].replace('-', '')}",
        members={
            n: FusionMember(weight=promotion.fusion["weights"][n], **promotion.fusion["members"][n])
            for n in promotion.fusion["weights"]
        },
        bias=promotion.fusion["bias"],
        threshold=promotion.measured[FUSION]["threshold"],
        threshold_method=f"bpcer{round(1 / promotion.bpcer)} on held-out verdicts",
        trained_on=f"logistic regression on per-face logits of {promotion.data}",
        limits="fitted and measured on one archive's held-out verdicts; valid only with the member weights it names",
        real_evaluation=_evaluation(promotion, FUSION) if promotion.decides == FUSION else None,
        session=_session_point(promotion, FUSION, config) if promotion.decides == FUSION else None,
        metrics=promotion.measured[FUSION],
    )
    fusion_dir.mkdir(parents=True)
    write_card(fusion_card, fusion_dir)

    def with_figures(card: dict[str, Any]) -> dict[str, Any]:
        card = card | {
            "notes": card.get("notes", {}) | {"promotion": {"why": promotion.why, "made_at": promotion.made_at}}
        }
        if promotion.decides == "b2":
            card["real_evaluation"] = _evaluation(promotion, "b2").model_dump(mode="json")
            card["session"] = _session_point(promotion, "b2", config).model_dump(mode="json")
        ModelCard.model_validate(card)  # refused before it is written
        return card

    update_card(model_dir, with_figures)
    report = json.dumps(promotion.to_json(), indent=2) + "\n"
    write_aside(model_dir / PROMOTION_JSON, lambda tmp: tmp.write_text(report))
    return write_config(promotion, model_dir, fusion_dir, config, store, to)


def write_config(
    promotion: Promotion, model_dir: Path, fusion_dir: Path, config: ScanConfig, store: Store, to: Path | None
) -> str:
    """The scan config with the new B2 as ``model``, the fusion as a scorer, and the chosen scorer
    deciding at its threshold on the held-out verdicts (a calibration naming the promotion)."""
    label = (
        f"promotion at bpcer={promotion.bpcer:g}: {promotion.decides} decides, from {promotion.live} live and"
        f" {promotion.spoof} spoof held-out verdicts of {promotion.scan} ({promotion.made_at})"
    )
    data = config.model_dump(mode="json")
    data["model"] = str(model_dir)
    data["scorers"] = data["scorers"] | {FUSION: {"model": str(fusion_dir)}}
    data["decision"] |= {
        "scorers": [promotion.decides],
        "thresholds": {promotion.decides: max(promotion.measured[promotion.decides]["threshold"], 1e-6)},
        "calibration": label,
    }
    return write_scan_config(
        store, ScanConfig.model_validate(data), "promote", "promotion", label, promotion.made_at, to
    )
