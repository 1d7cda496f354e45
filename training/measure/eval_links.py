"""How well does the same-recording link work on real video? Re-uploads of real clips must be
linked, different recordings (the same man in the same room among them) must not.

Each real clip is decoded and written again as a re-upload would be: trimmed at the start,
scaled down, resampled to another frame rate and recompressed (each drawn from ``--seed``).
Every clip and every re-upload is fingerprinted exactly as the scan does
(:class:`pipeline.video.fingerprint.FingerprintTrack` over the scan's sampled frames), then

- each clip against its own re-upload gives the share :func:`pipeline.links.video.same_recording`
  finds (a link where it reaches ``links.min_matched``),
- every pair of different clips gives the share of the closest look-alike recordings.

    uv run python -m training.measure.eval_links --seed 1     # about 3 min on 2 cores

Prints JSON: the settings, every re-upload's share, how many were linked, and the highest
shares between different recordings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import tempfile
from pathlib import Path

import av

from pipeline.config import LinksConfig, load_scan_config
from pipeline.links.video import same_recording
from pipeline.video.decode import VideoReader
from pipeline.video.fingerprint import Fingerprint, FingerprintTrack
from training.data.real_data import REAL
from training.data.video_writer import write_video

REAL_VIDEOS = REAL / "videos"


def fingerprint(path: Path, hz: float, sample_fps: float, max_frames: int) -> Fingerprint:
    """A video's fingerprint, as the scan takes it from its sampled frames."""
    track = FingerprintTrack(hz)
    with VideoReader(path, sample_fps=sample_fps, max_frames=max_frames) as video:
        for frame in video.sampled():
            track.add(frame.pts_s, frame.image)
    return track.finish()


def reupload(source: Path, target: Path, *, scale: float, skip_s: float, fps: float, crf: int) -> Path:
    """``source`` from ``skip_s`` on, scaled by ``scale``, at most ``fps`` frames a second (its
    timing kept) and recompressed at ``crf``: what a re-upload of the same recording looks like."""
    frames, times, due = [], [], skip_s
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time < due:
                continue
            due = frame.time + 1.0 / fps
            w, h = int(frame.width * scale) // 2 * 2, int(frame.height * scale) // 2 * 2
            frames.append(frame.reformat(width=w, height=h, format="rgb24").to_ndarray())
            times.append(frame.time - skip_s)
    return write_video(target, frames, fps=fps, times_s=times, crf=crf)


def evaluate_links(clips: list[Path], config: LinksConfig, *, seed: int, sample_fps: float, max_frames: int) -> dict:
    """Shares of every clip's re-upload and of every pair of different clips (see the module)."""
    rng = random.Random(seed)
    loose = config.model_copy(update={"min_matched": 0})  # every share, linked or not
    prints = {c.name: fingerprint(c, config.hash_hz, sample_fps, max_frames) for c in clips}
    copies: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            scale, skip_s, fps = rng.uniform(0.4, 0.8), rng.uniform(0.3, 1.0), rng.choice([10.0, 15.0, 24.0])
            path = reupload(clip, Path(tmp) / clip.name, scale=scale, skip_s=skip_s, fps=fps, crf=rng.randint(28, 36))
            copy = fingerprint(path, config.hash_hz, sample_fps, max_frames)
            if min(len(copy), len(prints[clip.name])) >= config.min_frames:
                copies[clip.name] = same_recording(prints[clip.name], copy, loose) or 0.0
    others = sorted(
        ((same_recording(prints[a], prints[b], loose) or 0.0, a, b) for a, b in itertools.combinations(prints, 2)),
        reverse=True,
    )
    return {
        "settings": config.model_dump(),
        "seed": seed,
        "reuploads": len(copies),
        "reuploads_linked": sum(share >= config.min_matched for share in copies.values()),
        "reupload_shares": {k: round(v, 3) for k, v in copies.items()},
        "pairs_of_different_recordings": len(others),
        "different_linked": sum(share >= config.min_matched for share, _, _ in others),
        "highest_different": [{"share": round(s, 3), "a": a, "b": b} for s, a, b in others[:5]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=REAL_VIDEOS, help="folder of real clips (searched recursively)")
    parser.add_argument("--seed", type=int, default=1, help="draws the re-uploads' trims, sizes, rates and quality")
    args = parser.parse_args(argv)
    config = load_scan_config(None)
    clips = sorted(args.videos.rglob("*.mp4"))
    result = evaluate_links(
        clips, config.links, seed=args.seed, sample_fps=config.decode.sample_fps, max_frames=config.decode.max_frames
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
