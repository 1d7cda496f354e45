r"""How well does a whole scan do on synthetic sessions with known truth?

Joins the ground-truth manifest of ``liveness synth`` sessions with the ``sessions`` rows
a ``liveness scan`` of them wrote, and measures every session signal end to end (video
encoded, decoded, detected, scored): swap detection and timing, false swaps, blink counts,
per-region occlusion precision and recall, several faces, and the decisions per kind.

    uv run liveness synth --out data/evalset --sessions 150 --images-per-class 0 --seed 7
    uv run liveness scan data/evalset/sessions/manifest.csv --out data/evalset-scan
    uv run python -m training.measure.eval_scan --manifest data/evalset/sessions/manifest.parquet \
        --scan data/evalset-scan --split test

``--split test`` keeps the sessions whose subjects neither the spoof model nor the
occlusion model saw in training (the subject split of :func:`training.data.datasets.split_for_subject`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from pipeline.reports.query import run_query
from pipeline.schema import REGIONS

BLINK_KINDS = ("live", "swap", "occluded")  # one face on screen: the rendered blinks are the followed face's


def load_rows(manifest: str, scan: str, split: str | None) -> list[dict]:
    """One dict per session: the truth (``true_*``) and what the scan found."""
    truth = {r["session_id"]: r for r in pq.read_table(manifest).to_pylist()}
    found = run_query(
        scan, "select * from sessions qualify row_number() over (partition by session_id order by scanned_at desc) = 1"
    ).to_pylist()
    rows = []
    for row in found:
        t = truth.get(row["session_id"])
        if t is None or (split and t.get("split") != split):
            continue
        rows.append(row | {f"true_{k}": v for k, v in t.items() if k != "session_id"})
    return rows


def _rate(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def metrics(rows: list[dict]) -> dict:
    """Every end-to-end figure of the evaluation."""
    ok = [r for r in rows if r["status"] == "ok"]
    swaps = [r for r in ok if r["true_kind"] == "swap"]
    found = [r for r in swaps if r["swap_detected"]]
    errors = np.array([abs(r["swap_at_s"] - r["true_swap_at_s"]) for r in found])
    swap_free = [r for r in ok if r["true_kind"] != "swap"]
    blink_rows = [r for r in ok if r["true_kind"] in BLINK_KINDS and r["blink_count"] is not None]
    blink_err = np.array([r["blink_count"] - len(r["true_blink_times_s"] or []) for r in blink_rows])
    occlusion = {}
    for region in REGIONS:
        tp = sum(
            1 for r in ok if region in (r["occluded_regions"] or []) and region in (r["true_occluded_regions"] or [])
        )
        fp = sum(
            1
            for r in ok
            if region in (r["occluded_regions"] or []) and region not in (r["true_occluded_regions"] or [])
        )
        fn = sum(
            1
            for r in ok
            if region not in (r["occluded_regions"] or []) and region in (r["true_occluded_regions"] or [])
        )
        occlusion[region] = {
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }
    attacks = [r for r in ok if r["true_label"] == "spoof" and r["true_attack_type"] in ("print", "replay")]
    bona_fide = [r for r in ok if r["true_kind"] == "live"]
    decisions = {
        kind: dict(Counter(r["decision"] or r["status"] for r in rows if r["true_kind"] == kind))
        for kind in sorted({r["true_kind"] for r in rows})
    }
    return {
        "sessions": len(rows),
        "sessions_ok": len(ok),
        "status": dict(Counter(r["status"] for r in rows)),
        "swap_sessions": len(swaps),
        "swap_detection_rate": _rate([r["swap_detected"] for r in swaps]),
        "swap_within_0.5s_rate": _rate(
            [bool(r["swap_detected"]) and abs(r["swap_at_s"] - r["true_swap_at_s"]) <= 0.5 for r in swaps]
        ),
        "swap_timing_error_mean_s": float(errors.mean()) if len(errors) else None,
        "swap_timing_error_max_s": float(errors.max()) if len(errors) else None,
        "swap_free_sessions": len(swap_free),
        "false_swap_rate": _rate([bool(r["swap_detected"]) for r in swap_free]),
        "blink_sessions": len(blink_rows),
        "blink_true_total": int(sum(len(r["true_blink_times_s"] or []) for r in blink_rows)),
        "blink_exact_count_rate": _rate(list(blink_err == 0)),
        "blink_count_mae": float(np.abs(blink_err).mean()) if len(blink_err) else None,
        "occlusion": occlusion,
        "multi_face_flagged_rate": _rate(
            ["multi_face" in (r["reasons"] or []) for r in ok if r["true_kind"] == "multi_face"]
        ),
        "multi_face_false_rate": _rate(
            ["multi_face" in (r["reasons"] or []) for r in ok if r["true_kind"] != "multi_face"]
        ),
        "session_apcer": _rate([r["decision"] == "live" for r in attacks]),
        "session_bpcer": _rate([r["decision"] == "spoof" for r in bona_fide]),
        "static_rate": _rate([bool(r["static"]) for r in ok]),
        "decisions_per_kind": decisions,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="the synth sessions' manifest.parquet")
    parser.add_argument("--scan", required=True, help="the scan's --out")
    parser.add_argument("--split", choices=["train", "val", "test"], help="only sessions of this subject split")
    args = parser.parse_args(argv)
    print(json.dumps(metrics(load_rows(args.manifest, args.scan, args.split)), indent=2))


if __name__ == "__main__":
    main()
