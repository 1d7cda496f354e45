"""A deciding scorer's session operating point, chosen and measured on real session videos.

A session score pools many faces (``aggregate.method``), so it is not judged by the
threshold chosen on single photographs (the card's ``threshold``). The real clips beside the
project (``../shared/real/videos``) are scanned as a user would (links off, default
settings) and give:

- **live sessions**: the clips of live people (``live/``), split by who filmed them (the
  source repository's owner: one man is in four clips of one owner) into ``tune``, which
  chooses, and ``test``, which only measures;
- **attack stretches**: no whole real attack session exists here. The clips in ``mixed/``
  switch between a live person and an attack; the stretches where an attack is the face
  in view (:data:`ATTACK_STRETCHES`, from their README and their frames) are pooled as
  sessions of their own, and the whole mixed clips are measured as the partial attacks
  they are. These measure; they choose nothing (too few).

The choice, on the tune live sessions only:

- ``live_below`` (threshold - band): the lowest edge with at most :data:`TUNE_REVIEW` of
  the tune live sessions above it: a session is decided live only if it scores as the real
  live sessions measured do; the rest go to review, never straight to spoof;
- ``spoof_from`` (threshold + band): the photo operating point's spoof edge (its threshold
  plus ``aggregate.review_band``: the only edge measured on real attacks), raised above the
  highest tune live session if one reaches it: the score alone never decides spoof where a
  real live session was measured.

    uv run python -m training.cards.session_points            # rewrites models/reference/model.json's session
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.atomic import write_aside
from pipeline.checkpoint import CARD_FILE
from pipeline.config import AggregateConfig, load_scan_config
from pipeline.reports.query import run_query
from pipeline.schema import DECISION_LIVE, DECISION_REVIEW, DECISION_SPOOF
from pipeline.scoring.model import SessionOperatingPoint
from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR
from pipeline.scoring.registry import read_scorer_card
from pipeline.session.aggregate import decide, pool_scores
from training.data.real_data import clip_sources, clip_split
from training.measure.eval_links import REAL_VIDEOS

TUNE_REVIEW = 0.10  # the share of tune live sessions that may score above live_below
# Every clip measured is refined (its deciders score every face), as a scan refines a session
# near an edge (scoring.refine_band): the score an edge is set at is the one a scan judges there.
EVERY_FACE = ("--set", "scoring.refine_band=0.99")
# (start s, end s, attack) where an attack is the face in view; the rest of these clips is a live person
ATTACK_STRETCHES = {
    "mixed/mixed_silentface_1": ((0.0, 0.6, "print"),),
    "mixed/silentface_apk_demo": ((1.2, 2.1, "replay"), (2.2, 2.9, "print")),
    "mixed/minifas_webcam_demo": ((7.8, 8.5, "print"),),
}


def choose_point(
    tune_live: np.ndarray, photo_threshold: float, review_band: float, tune_review: float = TUNE_REVIEW
) -> tuple[float, float]:
    """``(threshold, review_band)`` of the session operating point (see the module's doc).

    >>> [round(v, 4) for v in choose_point(np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]), 0.95, 0.05)]
    [0.9, 0.1]
    """
    live = np.sort(np.asarray(tune_live, np.float64))
    if not len(live):
        raise ValueError("no tune live sessions to choose a session operating point on")
    allowed = int(np.floor(tune_review * len(live) + 1e-9))
    live_below = float(live[len(live) - 1 - allowed]) + 1e-6  # that session itself decided live, rounding aside
    spoof_from = max(photo_threshold + review_band, float(live[-1]) + 1e-3)
    spoof_from = min(max(spoof_from, live_below), 1.0)
    return (live_below + spoof_from) / 2, (spoof_from - live_below) / 2


def _decisions(scores: dict[str, float], threshold: float, band: float) -> dict[str, int]:
    decided = [decide(s, threshold, band) for s in scores.values()]
    return {d: decided.count(d) for d in (DECISION_LIVE, DECISION_REVIEW, DECISION_SPOOF)}


def measure(out: Path, scorer: str, splits: dict[str, str], pooling: AggregateConfig) -> dict[str, dict[str, float]]:
    """Session scores of ``scorer`` in the scan at ``out``: ``tune``/``test`` live sessions,
    ``mixed`` whole clips and ``attacks`` (the stretches of :data:`ATTACK_STRETCHES`)."""
    rows = run_query(str(out), "select session_id, scores from sessions where status = 'ok'").to_pylist()
    pooled = {r["session_id"]: dict(r["scores"])[scorer] for r in rows if r["scores"]}
    frames = run_query(
        str(out), f"select session_id, pts_s, {scorer}_score as s from frames where n_faces > 0 order by pts_s"
    ).to_pylist()
    found: dict[str, dict[str, float]] = {"tune": {}, "test": {}, "mixed": {}, "attacks": {}}
    for sid, score in pooled.items():
        if sid.startswith("live/"):
            found[splits[sid]][sid] = score
        elif sid.startswith("mixed/"):
            found["mixed"][sid] = score
    for sid, stretches in ATTACK_STRETCHES.items():
        for start, end, attack in stretches:
            values = [r["s"] if r["s"] is not None else float("nan") for r in frames
                      if r["session_id"] == sid and start <= r["pts_s"] < end]  # fmt: skip
            score = pool_scores(values, pooling.method, pooling.topk)
            if score is not None:
                found["attacks"][f"{sid}@{start:g}-{end:g}s:{attack}"] = score
    return found


def session_point(found: dict[str, dict[str, float]], photo_threshold: float, review_band: float) -> dict:
    """The operating point chosen on ``found['tune']`` and what it does everywhere."""
    threshold, band = choose_point(np.array(list(found["tune"].values())), photo_threshold, review_band)
    return {
        "threshold": threshold,
        "review_band": band,
        "decisions": {part: _decisions(scores, threshold, band) for part, scores in found.items()},
        "scores": {part: {k: round(v, 6) for k, v in sorted(scores.items())} for part, scores in found.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=REAL_VIDEOS, help="the real clips (live/, mixed/)")
    parser.add_argument("--scorer", default="reference", help="the scorer whose card gets the point")
    parser.add_argument("--model", type=Path, default=DEFAULT_REFERENCE_DIR, help="its checkpoint directory")
    parser.add_argument("--scan", type=Path, help="an existing scan of --videos (links off) instead of a new one")
    args = parser.parse_args(argv)
    from training.cards.signal_cards import scan_real_clips

    splits = {sid: clip_split(row) for sid, row in clip_sources(args.videos).items()}
    card = read_scorer_card(args.model)
    aggregate = load_scan_config(None).aggregate
    review_band = aggregate.review_band
    with tempfile.TemporaryDirectory() as tmp:
        scan = args.scan or scan_real_clips(args.videos, Path(tmp) / "scan", EVERY_FACE)
        found = measure(scan, args.scorer, splits, aggregate)
    chosen = session_point(found, card.threshold, review_band)
    d = chosen["decisions"]
    point = SessionOperatingPoint(
        threshold=chosen["threshold"],
        review_band=chosen["review_band"],
        pooling=aggregate.method,
        method=f"live_below = the lowest edge with at most {TUNE_REVIEW:g} of the tune live sessions above it; "
        f"spoof_from = the photo threshold + aggregate.review_band ({card.threshold:.3f} + {review_band:g}), raised "
        "above the highest tune live session if one reaches it (training/cards/session_points.py)",
        threshold_data=f"shared/real/videos/live, tune split by filming owner: {len(found['tune'])} clips of live "
        "people",
        data=f"shared/real/videos: test split, {len(found['test'])} clips of live people (other owners); "
        f"{len(found['attacks'])} real attack stretches and {len(found['mixed'])} whole clips from mixed/",
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        metrics={
            "test_live": d["test"],
            "attack_stretches": d["attacks"],
            "mixed_clips": d["mixed"],
            "tune_live": d["tune"],
            "scores": chosen["scores"],
        },
    )
    data = json.loads((args.model / CARD_FILE).read_text()) | {"session": point.model_dump(mode="json")}
    text = json.dumps(data, indent=2) + "\n"
    write_aside(args.model / CARD_FILE, lambda tmp: tmp.write_text(text))
    print(json.dumps(point.model_dump(mode="json"), indent=2))


if __name__ == "__main__":
    main()
