"""How well do the temporal session signals work? Blinks, identity swap and static stream
measured on synthetic sessions with known truth.

Renders sessions with :func:`training.data.synth.render_session_frames` at the scanner's
signal rate and runs exactly the scan's per-frame path on them
(:class:`pipeline.session.frame_path.FramePath`: face detection, the main face followed, the
model card's crop, tracked face mesh, occlusion, blinks, swap, static), without a video
codec in between. Besides the synthetic kinds it
makes two static streams: ``still_print`` (the first frame of a print session repeated
with fresh sensor noise: a photo held perfectly still) and ``frozen_live`` (a live
session whose frames stop changing at a random moment: a frozen injected feed).

    uv run python -m training.measure.eval_signals --sessions 350 --seed 2   # about 4 min on 2 cores

Prints the swap detection rate and timing error on swap sessions, the false swap rate on
swap-free sessions, blink counting accuracy against the rendered blinks, static flags
per kind and the cost of the per-frame path.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from pipeline.config import DetectConfig, IdentityConfig, SignalsConfig
from pipeline.faces.crop import CropSpec
from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card
from pipeline.session.frame_path import FramePath, SessionFrames
from pipeline.video.decode import SampledFrame
from training.data.face_sources import FaceSource, load_face_sources
from training.data.scene import NOISE_SIGMAS, add_sensor_noise
from training.data.synth import SessionSpec, random_spec, render_session_frames

SIGNAL_FPS = 12.0
EVAL_KINDS = ("live", "swap", "print", "replay", "occluded", "still_print", "frozen_live")
BLINK_KINDS = ("live", "swap", "occluded")  # kinds whose rendered blinks are all on screen


def session_frames(path: FramePath, frames: Iterable[np.ndarray], times: Sequence[float]) -> SessionFrames:
    """One session's rendered frames (at ``times``) through the scan's per-frame path."""
    timed = zip(times, frames, strict=False)
    return path.run(SampledFrame(index=i, pts_s=float(t), image=frame) for i, (t, frame) in enumerate(timed))


def _session_frames(
    kind: str, spec: SessionSpec, sources: Sequence[FaceSource], rng: np.random.Generator
) -> Iterator[np.ndarray]:
    frames = render_session_frames(spec, sources, upright=True)
    if kind == "still_print":
        first = next(frames)
        sigma = float(rng.choice(NOISE_SIGMAS))
        for _ in range(spec.n_frames):
            frame = first.copy()
            add_sensor_noise(frame, sigma, rng)
            yield frame
    elif kind == "frozen_live":
        freeze_at = int(rng.integers(1, max(2, spec.n_frames // 3)))
        for i, frame in enumerate(frames):
            if i == freeze_at:
                frozen = frame
            yield frozen if i >= freeze_at else frame
    else:
        yield from frames


def _spec(kind: str, i: int, subjects: list[str], rng: np.random.Generator) -> SessionSpec:
    base = {"still_print": "print", "frozen_live": "live"}.get(kind, kind)
    duration = round(float(rng.uniform(3.0, 6.0)), 2)
    return random_spec(f"eval{i:04d}_{kind}", base, subjects, rng, duration_s=duration, fps=SIGNAL_FPS)


def evaluate(
    n_sessions: int, seed: int, config: SignalsConfig, crop: CropSpec, identity: IdentityConfig | None = None
) -> dict:
    """Render ``n_sessions`` sessions (kinds in turn), run the signals (swaps by identity with
    ``identity``, by face shape without), return per-session rows and metrics."""
    sources = load_face_sources()
    ids = [s.subject_id for s in sources]
    rng = np.random.default_rng(seed)
    path = FramePath(crop, DetectConfig(), config, identity=identity)
    rows, seconds = [], []
    for i in range(n_sessions):
        kind = EVAL_KINDS[i % len(EVAL_KINDS)]
        subjects = [ids[j] for j in rng.choice(len(ids), 2, replace=False)]
        spec = _spec(kind, i, subjects, rng)
        times = [k / spec.fps for k in range(spec.n_frames)]
        start = time.perf_counter()
        result = session_frames(path, _session_frames(kind, spec, sources, rng), times)
        verdict = result.verdicts
        seconds.append((time.perf_counter() - start) / len(times))
        rows.append(
            {
                "session_id": spec.session_id,
                "kind": kind,
                "swap_to": spec.swap_to if kind == "swap" else None,
                "duration_s": spec.duration_s,
                "face_frames": int(result.records.has_face.sum()),
                "frames": len(times),
                "true_swap_at_s": spec.swap_at_s,
                "swap_detected": bool(verdict.swap_detected),
                "swap_at_s": verdict.swap_at_s,
                "true_blinks": len(spec.blinks),
                "blinks": verdict.blink_count or 0,
                "static": bool(verdict.static),
            }
        )
    return {"rows": rows, "metrics": metrics(rows), "cost": {"signal_path_ms_per_frame": 1e3 * float(np.mean(seconds))}}


def metrics(rows: list[dict]) -> dict:
    """Swap, blink and static metrics of the per-session rows of :func:`evaluate`."""
    swaps = [r for r in rows if r["kind"] == "swap"]
    found = [r for r in swaps if r["swap_detected"]]
    errors = np.array([abs(r["swap_at_s"] - r["true_swap_at_s"]) for r in found])
    swap_free = [r for r in rows if r["kind"] != "swap"]
    blink_rows = [r for r in rows if r["kind"] in BLINK_KINDS]
    blink_err = np.array([r["blinks"] - r["true_blinks"] for r in blink_rows])
    kinds = sorted({r["kind"] for r in rows}, key=EVAL_KINDS.index)
    return {
        "sessions": len(rows),
        "swap_sessions": len(swaps),
        "swap_detection_rate": len(found) / max(len(swaps), 1),
        "swap_found_within_0.5s_rate": float(np.sum(errors <= 0.5)) / max(len(swaps), 1),
        "swap_timing_error_mean_s": float(errors.mean()) if len(errors) else None,
        "swap_timing_error_max_s": float(errors.max()) if len(errors) else None,
        "swap_free_sessions": len(swap_free),
        "false_swap_rate": sum(r["swap_detected"] for r in swap_free) / max(len(swap_free), 1),
        "false_swaps_per_kind": {
            k: sum(r["swap_detected"] for r in swap_free if r["kind"] == k) for k in kinds if k != "swap"
        },
        "blink_sessions": len(blink_rows),
        "blink_true_total": int(sum(r["true_blinks"] for r in blink_rows)),
        "blink_exact_count_rate": float(np.mean(blink_err == 0)) if len(blink_err) else None,
        "blink_count_mae": float(np.abs(blink_err).mean()) if len(blink_err) else None,
        "blink_count_bias": float(blink_err.mean()) if len(blink_err) else None,
        "blink_exact_count_rate_per_kind": {
            k: float(np.mean([r["blinks"] == r["true_blinks"] for r in blink_rows if r["kind"] == k]))
            for k in BLINK_KINDS
            if k in kinds
        },
        "blinks_on_blinkless_kinds": {
            k: int(sum(r["blinks"] for r in rows if r["kind"] == k)) for k in ("print", "replay", "still_print")
        },
        "static_rate_per_kind": {k: float(np.mean([r["static"] for r in rows if r["kind"] == k])) for k in kinds},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=350, help="sessions to render (kinds in turn)")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--rows", help="also write the per-session rows to this JSON file")
    parser.add_argument(
        "--model",
        default=str(DEFAULT_MODEL_DIR),
        help="checkpoint whose card gives the crop (default: the shipped model)",
    )
    parser.add_argument("--no-identity", action="store_true", help="swaps by face shape only (identity off)")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be >= 1, got {args.sessions}")
    start = time.perf_counter()
    identity = None if args.no_identity else IdentityConfig()
    result = evaluate(args.sessions, args.seed, SignalsConfig(), read_card(args.model).crop_spec, identity)
    if args.rows:
        with open(args.rows, "w") as f:
            json.dump(result["rows"], f, indent=1)
    report = {"seed": args.seed, **result["metrics"], **result["cost"], "wall_s": round(time.perf_counter() - start, 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
