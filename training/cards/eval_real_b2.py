"""A B2 and the reference on real faces held out from the B2's training: is it still blind?

The real clips beside the project (``../shared/real/videos``) are scanned with the B2 at
``--model`` as a user would (links off), with every sampled face scored by every scorer
(``scoring.rate_hz=null``), and give:

- **live faces**: the faces of the clips of live people that :func:`clip_split` puts in
  ``test`` (filmed by other owners than the ``tune`` clips, which training may use);
- **attack faces**: the faces of the real attack stretches of the mixed clips
  (:data:`training.cards.session_points.ATTACK_STRETCHES`: a print or a screen is the face
  in view), which no training here uses.

Per face: ROC-AUC and APCER at 5% BPCER (the threshold where at most 5% of these live
faces are rejected), with 95% bootstrap intervals over faces (faces of one clip are not
independent: the intervals are narrower than the truth). Per session: each live clip and
each attack stretch pooled as the scan pools (too few attacks for a rate: the scores are
listed). Every figure is for the B2 and the reference side by side, from the same faces.

    uv run python -m training.cards.eval_real_b2 --model models/default [--scan DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import load_scan_config
from pipeline.reports.query import run_query
from pipeline.scoring.model import DEFAULT_MODEL_DIR
from pipeline.session.aggregate import pool_scores
from training.cards.session_points import ATTACK_STRETCHES
from training.data.real_data import clip_sources, clip_split
from training.measure.eval_links import REAL_VIDEOS
from training.measure.evaluate_images import apcer_at_bpcer, bootstrap_interval
from training.measure.metrics import roc_auc

SCORERS = ("b2", "reference")
BPCER = 0.05
EVERY_FACE = ("--set", "scoring.rate_hz=null", "--set", "scoring.refine_band=null")


def held_out_faces(scan: Path, videos: Path) -> dict[str, dict[str, list[float]]]:
    """Per group (``live:<clip>`` or ``attack:<clip>@<start>-<end>s:<kind>``) each scorer's
    per-face scores, in time order."""
    test = {sid for sid, row in clip_sources(videos).items() if clip_split(row) == "test"}
    rows = run_query(
        str(scan),
        "select session_id, pts_s, scores from frames where n_faces > 0 and scores is not null order by pts_s",
    ).to_pylist()
    groups: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        sid, t, scores = r["session_id"], r["pts_s"], dict(r["scores"])
        if sid in test:
            key = f"live:{sid}"
        else:
            key = next(
                (f"attack:{sid}@{a:g}-{b:g}s:{kind}" for a, b, kind in ATTACK_STRETCHES.get(sid, ()) if a <= t < b), ""
            )
        if key and all(name in scores for name in SCORERS):
            for name in SCORERS:
                groups.setdefault(key, {n: [] for n in SCORERS})[name].append(float(scores[name]))
    return groups


def figures(groups: dict[str, dict[str, list[float]]], method: str, topk: int) -> dict[str, Any]:
    """Per-face and per-session figures of every scorer on the held-out groups."""
    out: dict[str, Any] = {}
    labels = np.array([int(k.startswith("attack:")) for k, g in groups.items() for _ in g[SCORERS[0]]], np.int64)
    metric = apcer_at_bpcer(BPCER)
    for name in SCORERS:
        faces = np.array([s for g in groups.values() for s in g[name]], np.float64)
        pooled = {k: pool_scores(g[name], method, topk) for k, g in groups.items()}  # type: ignore[arg-type]
        out[name] = {
            "faces_roc_auc": round(roc_auc(faces, labels), 4),
            "faces_roc_auc_ci95": bootstrap_interval(roc_auc, faces, labels),
            f"faces_apcer_at_bpcer{BPCER:g}": round(metric(faces, labels), 4),
            "faces_apcer_ci95": bootstrap_interval(metric, faces, labels),
            "sessions_roc_auc": round(
                roc_auc(np.array(list(pooled.values())), np.array([int(k.startswith("attack:")) for k in pooled])), 4
            ),
            "sessions": {k: round(float(v), 4) for k, v in pooled.items() if v is not None},
        }
    out["data"] = (
        f"{int((labels == 0).sum())} faces of {sum(k.startswith('live:') for k in groups)} held-out live clips (test"
        f" split by filming owner) and {int(labels.sum())} faces of {sum(k.startswith('attack:') for k in groups)}"
        " real attack stretches of the mixed clips, every face scored"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="the B2 checkpoint to measure")
    parser.add_argument("--videos", type=Path, default=REAL_VIDEOS, help="the real clips (live/, mixed/)")
    parser.add_argument("--scan", type=Path, help="an existing scan of --videos with this B2 (every face scored)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON too")
    args = parser.parse_args(argv)
    from training.cards.signal_cards import scan_real_clips

    aggregate = load_scan_config(None).aggregate
    with tempfile.TemporaryDirectory() as tmp:
        scan = args.scan or scan_real_clips(args.videos, Path(tmp) / "scan", (*EVERY_FACE, "--model", str(args.model)))
        found = figures(held_out_faces(scan, args.videos), aggregate.method, aggregate.topk)
    text = json.dumps({"model": str(args.model)} | found, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
