"""The benchmark's generated sessions: KYC-like videos rendered once and kept for reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.run.progress import Progress
from pipeline.video.sources import Session

BENCH_KINDS = ("live", "print", "replay", "live", "swap", "occluded")


def make_sessions(
    folder: Path, n: int, *, seconds: float, fps: float, size: tuple[int, int], seed: int = 0
) -> list[Session]:
    """``n`` synthetic KYC-like sessions (live, print, replay, swap, occluded in turn) as H.264
    files, rendered once (kept in ``folder``), with a progress bar while rendering."""
    from training.data.face_sources import load_face_sources
    from training.data.synth import random_spec, render_session_frames
    from training.data.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bench{i:04d}.mp4" for i in range(n)]
    missing = sum(not p.is_file() for p in paths)
    if not missing:
        return [Session(session_id=p.stem, uri=str(p.resolve())) for p in paths]
    sources = load_face_sources()
    ids = [s.subject_id for s in sources]
    rng = np.random.default_rng(seed)
    sessions = []
    with Progress(f"rendering {missing} sessions", missing, enabled=missing > 0) as progress:
        for i, path in enumerate(paths):
            kind = BENCH_KINDS[i % len(BENCH_KINDS)]
            subjects = [ids[j] for j in rng.choice(len(ids), 2, replace=False)]  # drawn always: same files
            if not path.is_file():
                spec = random_spec(f"bench{i:04d}", kind, subjects, rng, duration_s=seconds, fps=fps, size=size)
                write_video(path, render_session_frames(spec, sources, upright=True), fps=fps)
                progress.advance()
            sessions.append(Session(session_id=path.stem, uri=str(path.resolve())))
    return sessions
