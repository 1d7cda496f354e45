"""Synthetic sessions: determinism, real face detection on the rendered frames, manifests,
subject splits and the video files themselves."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.faces.detect import FaceDetector
from pipeline.faces.landmarks import FaceMesh, eye_aspect_ratio
from training.data.datasets import SPLITS, split_for_subject
from training.data.face_sources import REGIONS, load_face_sources
from training.data.synth import (
    IMAGE_MANIFEST_COLUMNS,
    KINDS,
    MANIFEST_COLUMNS,
    SessionSpec,
    make_demo_sessions,
    make_image_dataset,
    make_session_dataset,
    random_spec,
    render_session_frames,
)
from training.data.video_writer import write_video

# Frames sampled per session and sessions per kind for the detection-rate tests.
SAMPLED_FRAMES = (0, 11, 22, 33, 44)
SESSIONS_PER_KIND = 8


@pytest.fixture(scope="module")
def sources():
    return load_face_sources()


@pytest.fixture(scope="module")
def detector():
    with FaceDetector(model_selection=1, min_confidence=0.5) as fd:
        yield fd


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("demo")
    return out, make_demo_sessions(out, sources, seed=0)


def _n_faces(detector, frame: np.ndarray) -> int:
    return len(detector.detect(frame))


def _face_counts(detector, sources, kind: str, seed: int) -> list[int]:
    """Faces found in the sampled frames of SESSIONS_PER_KIND random sessions of ``kind``."""
    rng = np.random.default_rng(seed)
    ids = [s.subject_id for s in sources]
    counts = []
    for i in range(SESSIONS_PER_KIND):
        subjects = [str(s) for s in rng.choice(ids, 3, replace=False)]
        spec = random_spec(f"{kind}{i}", kind, subjects, rng)
        frames = list(render_session_frames(spec, sources, upright=True))
        counts += [_n_faces(detector, frames[j]) for j in SAMPLED_FRAMES]
    return counts


def test_face_sources_have_landmarks(sources):
    assert len(sources) >= 90
    assert len({s.subject_id for s in sources}) == len(sources)
    for s in sources[:5]:
        assert s.image.dtype == np.uint8 and s.image.ndim == 3
        assert s.landmarks.shape == (478, 2)
        assert set(s.centers) == set(REGIONS)
        # the person's left eye is on the image's right side
        assert s.centers["left_eye"][0] > s.centers["right_eye"][0]
        x, y, w, h = s.box
        for cx, cy in s.centers.values():
            assert x <= cx <= x + w and y <= cy <= y + h


@pytest.mark.parametrize("kind", ["live", "print", "replay", "occluded", "multi_face", "swap"])
def test_same_seed_same_frames_other_seed_other_frames(sources, kind):
    rng = np.random.default_rng(3)
    spec = random_spec("d", kind, ["grace_hopper", "astronaut", "lfw000"], rng, duration_s=0.4, fps=10)
    first = list(render_session_frames(spec, sources))
    again = list(render_session_frames(spec, sources))
    other = list(render_session_frames(SessionSpec(**{**spec.__dict__, "seed": spec.seed + 1}), sources))
    assert len(first) == spec.n_frames == 4
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=False))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other, strict=False))


# With these seeds all 40 sampled frames of each kind hold exactly one face; over 45 sessions
# per kind with other seeds the rates were live 0.98, print 0.96, replay 0.95.
@pytest.mark.parametrize(("kind", "min_ratio"), [("live", 0.95), ("print", 0.85), ("replay", 0.8)])
def test_one_face_detected_in_most_frames(sources, detector, kind, min_ratio):
    counts = _face_counts(detector, sources, kind, seed=11)
    ratio = np.mean([c == 1 for c in counts])
    assert ratio >= min_ratio, f"{kind}: one face in {ratio:.2f} of {len(counts)} frames"


def test_no_face_and_several_faces(sources, detector):
    assert sum(_face_counts(detector, sources, "no_face", seed=12)[:20]) == 0
    several = _face_counts(detector, sources, "multi_face", seed=13)
    assert np.mean([c >= 2 for c in several]) >= 0.9


def test_blink_closes_the_eyes_for_face_mesh(sources):
    """Face mesh's eye aspect ratio drops while the rendered eyes are shut."""
    spec = SessionSpec("b", "live", ("grace_hopper",), duration_s=1.0, fps=10, blinks=((0.0, 0.3),), seed=5)
    frames = list(render_session_frames(spec, sources))
    with FaceMesh() as mesh:
        ears = []
        for frame in (frames[1], frames[8]):  # shut at 0.1 s, open at 0.8 s
            lm = mesh.landmarks(frame)
            ears.append(eye_aspect_ratio(lm, "left") + eye_aspect_ratio(lm, "right"))
    shut, open_ = ears
    assert shut < 0.75 * open_


def test_spec_rejects_inconsistent_sessions():
    with pytest.raises(ValueError):
        SessionSpec("x", "live", ("a",), occluded_regions=("mouth",))
    with pytest.raises(ValueError):
        SessionSpec("x", "occluded", ("a",), occluded_regions=("ear",))
    with pytest.raises(ValueError):
        SessionSpec("x", "swap", ("a", "b"))
    with pytest.raises(ValueError):
        SessionSpec("x", "live", ("a",), size=(641, 480))


def test_split_is_deterministic_and_roughly_70_15_15():
    ids = [f"subject{i}" for i in range(2000)]
    splits = [split_for_subject(s, 7) for s in ids]
    assert splits == [split_for_subject(s, 7) for s in ids]
    share = {name: splits.count(name) / len(ids) for name in SPLITS}
    assert abs(share["train"] - 0.70) < 0.04 and abs(share["val"] - 0.15) < 0.03 and abs(share["test"] - 0.15) < 0.03
    assert splits != [split_for_subject(s, 8) for s in ids]


def test_session_dataset_manifest_and_videos(tmp_path, sources):
    rows = make_session_dataset(
        tmp_path, sources, n_sessions=len(KINDS), seed=4, duration_s=0.6, fps=10, size=(320, 240)
    )
    folder = tmp_path / "sessions"
    csv = pd.read_csv(folder / "manifest.csv")
    table = pq.read_table(folder / "manifest.parquet")
    assert tuple(csv.columns) == MANIFEST_COLUMNS == tuple(table.column_names)
    assert sorted(csv["kind"]) == sorted(KINDS)
    parquet = table.to_pylist()
    for row in parquet:
        assert isinstance(row["occluded_regions"], list) and isinstance(row["blink_times_s"], list)
        assert set(row["occluded_regions"]) <= set(REGIONS)
        assert (row["swap_at_s"] is None) == (row["kind"] != "swap")
        assert row["label"] in ({None} if row["kind"] == "no_face" else {"live", "spoof"})
        assert row["attack_type"] in ("none", "print", "replay")
        # partners of a swap or a group share the primary subject's split
        assert {split_for_subject(s, 4) for s in row["subjects"]} <= {row["split"]}
        with av.open(str(folder / row["uri"])) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 6
        assert frames[0].rotation == row["rotation"]
    occluded = next(r for r in parquet if r["kind"] == "occluded")
    assert csv.loc[csv["kind"] == "occluded", "occluded_regions"].item() == ";".join(occluded["occluded_regions"])
    assert rows == parquet


def test_image_dataset(tmp_path, sources):
    rows = make_image_dataset(tmp_path, sources, images_per_class=4, seed=2)
    manifest = pd.read_csv(tmp_path / "images" / "manifest.csv")
    assert tuple(manifest.columns) == IMAGE_MANIFEST_COLUMNS
    assert len(manifest) == len(rows) == 8
    assert (manifest["label"] == "live").sum() == (manifest["label"] == "spoof").sum() == 4
    assert set(manifest.loc[manifest["label"] == "spoof", "attack_type"]) == {"print", "replay"}
    for row in manifest.itertuples():
        path = tmp_path / "images" / row.path
        assert path.name.startswith(row.subject + "_")
        assert path.parent.name == ("live" if row.label == "live" else row.attack_type)
        assert row.split == split_for_subject(row.subject, 2)
        with Image.open(path) as im:
            assert im.size == (640, 480)


def test_demo_sessions(demo, detector):
    out, rows = demo
    by_id = {r["session_id"]: r for r in rows}
    kinds = [r["kind"] for r in rows]
    for kind in ("live", "print", "replay", "swap", "occluded", "no_face", "multi_face", "broken"):
        assert kind in kinds
    assert pq.read_table(out / "manifest.parquet").to_pylist() == rows
    for row in rows:
        path = out / row["uri"]
        assert path.exists()
        if row["kind"] == "broken":
            with pytest.raises(av.error.FFmpegError):
                with av.open(str(path)) as container:
                    list(container.decode(video=0))
            continue
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 45
        assert frames[0].rotation == row["rotation"]
    rotated = by_id["demo_live_phone_rotated"]
    assert rotated["rotation"] != 0
    with av.open(str(out / rotated["uri"])) as container:
        frame = next(container.decode(video=0))
    assert frame.rotation != 0
    stored = frame.to_ndarray(format="rgb24")
    upright = np.ascontiguousarray(np.rot90(stored, frame.rotation // 90))  # rotation is counter-clockwise
    assert upright.shape[:2] == (rotated["height"], rotated["width"])
    assert _n_faces(detector, upright) == 1
    assert by_id["demo_occluded_mouth"]["occluded_regions"] == ["mouth"]
    assert by_id["demo_swap"]["swap_at_s"] == 1.5


def test_rotated_session_is_stored_sideways(tmp_path, sources):
    spec = SessionSpec("r", "live", ("astronaut",), duration_s=0.4, fps=10, size=(240, 320), rotation=90, seed=1)
    stored = list(render_session_frames(spec, sources))
    upright = list(render_session_frames(spec, sources, upright=True))
    assert stored[0].shape[:2] == (240, 320) and upright[0].shape[:2] == (320, 240)
    assert np.array_equal(np.rot90(stored[0], 1), upright[0])
    path = write_video(Path(tmp_path) / "r.mp4", stored, fps=spec.fps, rotation=spec.rotation)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == spec.n_frames and frames[0].rotation == 90
