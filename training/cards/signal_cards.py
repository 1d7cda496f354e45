"""The signal card: every rule that can change a decision, measured on real footage.

Scans the real clips beside the project (``../shared/real/videos``: 19 clips of live
people, the 3 clips that switch between a live person and an attack, the Hamilton clip)
as a user would (``liveness scan``, links off, default settings) and, for each rule that
fired anywhere (``reasons``), counts

- **false fires**: live clips it fired on that are not a real case of what it detects;
- **hits**: real cases it found, where real cases exist here. The cases come from the
  clips' own descriptions (``live/SOURCES.csv``: its ``faces`` column for several faces, its
  ``duration_s`` for clips under ``static.min_static_s``; the corridor of face-masked
  students for a covered nose and mouth; the Hamilton clip's cuts between people for a swap;
  the two mixed clips where a printed photo or a phone is held up beside a live face, from
  ``mixed/README.md``, for a face beside the main one scored as a spoof).
  The clip where a man holds an earbuds case in front of his face is left out of the
  occlusion rules' counts: which regions it covers, and for how many frames, is not known.

The links are measured by their own evaluations and copied in: ``same_video`` from
:mod:`training.measure.eval_links` (re-uploads of every clip against pairs of different clips),
``same_face`` and ``reapplied`` from the identity card (pairs of real photographs).

    uv run python -m training.cards.signal_cards --out models/signals/card.json   # about 5 min on 2 cores

A rule that fired nowhere on live clips is written with its zero false fires: it was run on
them. A rule missing from the card (a new one) cannot move a decision: it only informs
(:mod:`pipeline.signals.card`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pipeline.atomic import write_aside
from pipeline.config import load_scan_config
from pipeline.faces.identity import IdentityCard
from pipeline.reports.query import run_query
from pipeline.session.aggregate import (
    REASON_LINKED,
    REASON_MULTI_FACE,
    REASON_OCCLUDED,
    REASON_OTHER_FACE,
    REASON_TOO_SHORT,
)
from pipeline.signals.card import SignalCard, SignalMeasurement
from training.data.real_data import clip_sources
from training.measure.eval_links import REAL_VIDEOS, evaluate_links

MASKED = "depthai-experiments_coronamask_input"  # students in face masks: nose and mouth covered
HELD_OVER = "opencv-zoo_dasiamrpn_demo"  # an earbuds case held in front of the face for 0-8 s: which regions, unknown
SWAPPED = "short_hamilton_clip"  # cuts between different people
HELD_UP = ("mixed/minifas_webcam_demo", "mixed/mixed_silentface_1")  # a photo or a phone held up beside a live face
RULES: tuple[str, ...] = (
    "swap",
    "static",
    "no_blink",
    REASON_TOO_SHORT,
    REASON_MULTI_FACE,
    REASON_OTHER_FACE,
    "partial_decode",
)
RULES += tuple(f"{REASON_OCCLUDED}{region}" for region in ("left_eye", "right_eye", "nose", "mouth"))


def real_cases(videos: Path, min_static_s: float) -> dict[str, set[str]]:
    """The clips (ids as the scan gives them) that really are a case of each rule."""
    cases: dict[str, set[str]] = {rule: set() for rule in RULES}
    for sid, row in clip_sources(videos).items():
        if row["faces"].strip() not in ("", "1"):
            cases[REASON_MULTI_FACE].add(sid)
        if float(row["duration_s"]) < min_static_s:
            cases[REASON_TOO_SHORT].add(sid)
    cases[f"{REASON_OCCLUDED}nose"].add(f"live/{MASKED}")
    cases[f"{REASON_OCCLUDED}mouth"].add(f"live/{MASKED}")
    cases["swap"].add(SWAPPED)
    cases[REASON_OTHER_FACE].update(HELD_UP)
    return cases


def scan_real_clips(videos: Path, out: Path, options: tuple[str, ...] = ()) -> Path:
    """Scan the real clips into ``out`` as a user would, each clip alone (links off), with
    every rule free to fire and be named whatever the shipped signal card says, plus the
    scan ``options`` given; returns ``out``."""
    from pipeline.cli.main import main as liveness

    blank = out.parent / "no-signal-card.json"
    blank.write_text(json.dumps(SignalCard("none", "nothing yet").to_json()))
    options = ("--set", "links.enabled=false", "--set", f"decision.signal_card={blank}", *options)
    if liveness(["scan", str(videos), "--out", str(out), "--quiet", *options]) != 0:
        raise RuntimeError(f"the scan of {videos} failed")
    return out


def measure_clips(videos: Path, out: Path) -> dict[str, SignalMeasurement]:
    """Scan the real clips into ``out`` and measure every rule on them."""
    config = load_scan_config(None)
    scan_real_clips(videos, out)
    rows = run_query(str(out), "select session_id, reasons from sessions where status <> 'failed'").to_pylist()
    fired = {r["session_id"]: set(r["reasons"]) for r in rows}
    live = sorted(sid for sid in fired if sid.startswith("live/"))
    cases = real_cases(videos, config.signals.static.min_static_s)
    where = (
        f"{len(live)} real clips of live people, {len(cases['swap'])} real clip(s) cut between people and"
        f" {len(cases[REASON_OTHER_FACE])} with a photo or a phone held up beside a live face"
    )
    measured = {}
    for rule in RULES:
        judged = [sid for sid in live if not (rule.startswith(REASON_OCCLUDED) and sid == f"live/{HELD_OVER}")]
        false = sorted(sid for sid in judged if rule in fired[sid] and sid not in cases[rule])
        truth = sorted(sid for sid in cases[rule] if sid in fired)
        measured[rule] = SignalMeasurement(
            live_sessions=len(judged), false_fires=len(false), real_cases=len(truth),
            hits=sum(rule in fired[sid] for sid in truth), measured_on=where, fired_on=tuple(false),
        )  # fmt: skip
    return measured


def measure_links(videos: Path) -> dict[str, SignalMeasurement]:
    """The links' measurements: pairs of different recordings or people, and real cases."""
    config = load_scan_config(None)
    links = evaluate_links(
        sorted(videos.rglob("*.mp4")), config.links, seed=2, sample_fps=config.decode.sample_fps,
        max_frames=config.decode.max_frames,
    )  # fmt: skip
    identity = IdentityCard.load().real_evaluation
    photos = [identity["deepface_master_csv"], identity["face_recognition_photos"]]
    different = sum(p["pairs"] - p["same_person_pairs"] for p in photos)
    same = sum(p["same_person_pairs"] for p in photos)
    false_matches = round(sum(p["false_match_rate"] * (p["pairs"] - p["same_person_pairs"]) for p in photos))
    misses = round(sum(p["false_non_match_rate"] * p["same_person_pairs"] for p in photos))
    face = SignalMeasurement(
        live_sessions=different, false_fires=false_matches, real_cases=same, hits=same - misses,
        measured_on=f"pairs of real photographs (the identity card's): {different} of different people, {same} of one",
    )  # fmt: skip
    video = SignalMeasurement(
        live_sessions=links["pairs_of_different_recordings"], false_fires=links["different_linked"],
        real_cases=links["reuploads"], hits=links["reuploads_linked"],
        measured_on="training.measure.eval_links --seed 2: pairs of different real clips, and re-uploads of each clip",
    )  # fmt: skip
    return {f"{REASON_LINKED}same_face": face, f"{REASON_LINKED}reapplied": face, f"{REASON_LINKED}same_video": video}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=REAL_VIDEOS, help="the real clips (live/, mixed/, ...)")
    parser.add_argument("--out", type=Path, required=True, help="the card to write (e.g. models/signals/card.json)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        signals = measure_clips(args.videos, Path(tmp) / "scan") | measure_links(args.videos)
    now = datetime.now(UTC)
    card = SignalCard(
        version=f"signals-real-{now:%Y%m%d}",
        measured_on=f"real footage in ../shared/real/videos (live/SOURCES.csv says what each clip is), {now:%Y-%m-%d}",
        signals=signals,
    )
    text = json.dumps(card.to_json(), indent=2) + "\n"
    write_aside(args.out, lambda tmp: tmp.write_text(text))
    print(text, end="")


if __name__ == "__main__":
    main()
