"""Synthetic sessions: deterministic, and the faces in them are real to MediaPipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.decode import VideoReader
from pipeline.faces import FaceDetector
from training.face_sources import load_face_sources
from training.synth import SessionSpec, make_demo_sessions, render_session_frames


@pytest.fixture(scope="module")
def sources():
    return load_face_sources()


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def spec(kind: str, subjects=("astronaut",), **kw) -> SessionSpec:
    base = {"session_id": kind, "kind": kind, "subjects": tuple(subjects), "duration_s": 1.0, "fps": 5.0, "seed": 3}
    return SessionSpec(**(base | kw))


def test_face_sources_load_many_subjects(sources):
    ids = [s.subject_id for s in sources]
    assert len(ids) >= 50 and len(set(ids)) == len(ids)
    assert {"grace_hopper", "astronaut"} <= set(ids)


def test_same_seed_same_frames_other_seed_other_frames(sources):
    a = list(render_session_frames(spec("live"), sources))
    b = list(render_session_frames(spec("live"), sources))
    c = list(render_session_frames(spec("live", seed=4), sources))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind", ["live", "print", "replay"])
def test_mediapipe_finds_one_face_in_face_sessions(kind, sources, detector):
    frames = list(render_session_frames(spec(kind, subjects=("grace_hopper",)), sources, upright=True))
    found = [len(detector.detect(f)) for f in frames]
    assert sum(n == 1 for n in found) >= 0.8 * len(frames), found


def test_no_face_and_several_faces(sources, detector):
    empty = [len(detector.detect(f)) for f in render_session_frames(spec("no_face", subjects=()), sources)]
    assert max(empty) == 0
    several = [len(detector.detect(f)) for f in render_session_frames(spec("multi_face", subjects=("grace_hopper", "astronaut")), sources)]
    assert sum(n >= 2 for n in several) >= 0.6 * len(several), several


def test_demo_sessions_and_manifest(tmp_path: Path, sources):
    rows = make_demo_sessions(tmp_path, sources, seed=0)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert len(manifest) == len(rows) and {"session_id", "uri", "label", "attack_type", "kind", "split", "swap_at_s", "occluded_regions"} <= set(manifest.columns)
    assert set(manifest["kind"]) >= {"live", "print", "replay", "swap", "occluded", "no_face", "multi_face", "broken"}
    subjects_by_split = manifest.dropna(subset=["subject"]).groupby("subject")["split"].nunique()
    assert (subjects_by_split == 1).all()
    rotated = manifest[manifest["rotation"] != 0].iloc[0]
    with VideoReader(tmp_path / rotated["uri"], sample_fps=5) as video:
        frames = list(video.sampled())
    assert video.rotation == rotated["rotation"] and frames[0].image.shape[:2] == (rotated["height"], rotated["width"])
