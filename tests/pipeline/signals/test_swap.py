import cv2
import numpy as np
import pytest

from pipeline.signals.swap import (
    StaticConfig,
    Swap,
    SwapConfig,
    detect_static,
    detect_swap,
    face_shape,
    shape_distance,
    similarity,
)

FPS = 12.0


def texture(seed: int, side: int = 128) -> np.ndarray:
    """A smooth random RGB picture standing in for a face crop."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)


def landmarks(seed: int) -> np.ndarray:
    """A random (478, 3) point cloud standing in for one person's face mesh."""
    return np.random.default_rng(seed).normal(0.0, 40.0, (478, 3)).astype(np.float32) + 96.0


def rotated(points: np.ndarray, yaw: float, roll: float = 0.0, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    cy, sy, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rot = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    centre = points.mean(axis=0)
    return ((points - centre) @ rot.T * scale + centre + shift).astype(np.float32)


def jittered(points: np.ndarray, rng: np.random.Generator, sd: float = 0.5) -> np.ndarray:
    return points + rng.normal(0.0, sd, points.shape).astype(np.float32)


# --------------------------------------------------------------------------- similarity


def test_similarity_of_a_crop_to_itself_is_one():
    crop = texture(0)
    assert similarity(crop, crop) == pytest.approx(1.0, abs=1e-4)


def test_similarity_shrugs_off_small_motion_and_lighting():
    crop = texture(0)
    moved = np.roll(crop, (3, -2), axis=(0, 1))
    zoomed = cv2.resize(crop[6:-6, 6:-6], (128, 128))  # 10% closer: between two searched scales
    lut = np.clip(255 * (np.arange(256) / 255.0) ** 1.4 * 0.6, 0, 255).astype(np.uint8)
    assert similarity(crop, moved) > 0.95
    assert similarity(crop, zoomed) > 0.9
    assert similarity(crop, lut[crop]) > 0.95
    assert similarity(crop, cv2.convertScaleAbs(crop, alpha=0.5, beta=40)) > 0.98


def test_similarity_is_low_across_a_cut_and_for_flat_crops():
    assert similarity(texture(0), texture(1)) < 0.6
    assert similarity(texture(0), np.full((128, 128, 3), 90, np.uint8)) == 0.0
    flat = np.full((128, 128, 3), 90, np.uint8)
    assert similarity(flat, flat) == 1.0


def test_similarity_rejects_non_square_crops():
    with pytest.raises(ValueError, match="square RGB"):
        similarity(texture(0), texture(0)[:100])


# --------------------------------------------------------------------------- face shape


def test_face_shape_ignores_pose_and_size_but_not_identity():
    a = landmarks(0)
    assert shape_distance(face_shape(a), face_shape(rotated(a, yaw=0.3, roll=0.2, scale=1.3, shift=12.0))) < 1e-6
    assert shape_distance(face_shape(a), face_shape(landmarks(1))) > 0.5
    with pytest.raises(ValueError, match="face-mesh points"):
        face_shape(a[:, :2])


# --------------------------------------------------------------------------- detect_swap


def session(n: int = 48, *, cut: int | None = None, seed: int = 0, turn: float = 0.0):
    """times, similarity_prev and shapes of a hand-made session: one face turning
    smoothly by ``turn`` radians, replaced by another from frame ``cut`` on."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    sim = np.clip(rng.normal(0.975, 0.01, n), 0, 1)
    sim[0] = np.nan
    a, b = landmarks(1), landmarks(1) + rng.normal(0.0, 4.0, (478, 3)).astype(np.float32)  # b: a similar face
    shapes = []
    for i in range(n):
        person = b if cut is not None and i >= cut else a
        shapes.append(face_shape(jittered(rotated(person, yaw=turn * i / n, roll=0.5 * turn * i / n), rng)))
    if cut is not None:
        sim[cut] = 0.5
    return t, sim, shapes


def test_a_cut_to_another_face_is_found_at_its_frame():
    t, sim, shapes = session(cut=25)
    assert detect_swap(t, sim, shapes) == Swap(True, t[25])


def test_smooth_turning_is_not_a_swap():
    t, sim, shapes = session(turn=0.6)
    assert detect_swap(t, sim, shapes) == Swap(False, None)


def test_a_similarity_drop_without_a_new_face_is_not_a_swap():
    t, sim, shapes = session()
    sim[20] = 0.3  # a hand passing, a detector box jump, a light switched on
    assert not detect_swap(t, sim, shapes).detected


def test_a_new_face_after_frames_without_one_is_found():
    t, sim, shapes = session(cut=25)
    sim[25] = 0.97  # the crops after the gap happen to look alike
    for i in (22, 23, 24):
        shapes[i] = None
        sim[i] = np.nan
    swap = detect_swap(t, sim, shapes)
    assert swap.detected and swap.at_s == pytest.approx(t[25])


def test_too_few_frames_around_a_cut_say_nothing():
    t, sim, shapes = session(cut=25)
    shapes = [s if 23 <= i < 27 else None for i, s in enumerate(shapes)]
    assert not detect_swap(t, sim, shapes).detected


def test_detect_swap_checks_its_inputs():
    t, sim, shapes = session()
    with pytest.raises(ValueError, match="one length"):
        detect_swap(t, sim[:-1], shapes)
    with pytest.raises(ValueError, match="cut_similarity"):
        SwapConfig(cut_similarity=1.5)
    with pytest.raises(ValueError, match="min_window_frames"):
        SwapConfig(min_window_frames=1)


# --------------------------------------------------------------------------- detect_static


def test_a_long_unchanged_run_is_static_and_a_short_one_is_not():
    t = np.arange(60) / FPS
    sim = np.full(60, 0.97)
    sim[10:40] = 1.0  # 2.5 s frozen
    assert detect_static(t, sim)
    sim[10:40] = 0.97
    sim[10:25] = 1.0  # 1.25 s
    assert not detect_static(t, sim)
    assert detect_static(t, sim, StaticConfig(min_static_s=1.0))


def test_frames_without_a_face_break_an_unchanged_run():
    t = np.arange(60) / FPS
    sim = np.ones(60)
    sim[[0, 20, 40]] = np.nan  # runs of 19 frames: 1.6 s
    assert not detect_static(t, sim)
    with pytest.raises(ValueError, match="min_static_s"):
        StaticConfig(min_static_s=0)


# --------------------------------------------------------------------------- real path


def run_session(
    signal_path, face_sources, spec, *, light_step_at_s: float | None = None, freeze_at_s: float | None = None
):
    """The scanner's signal inputs for a rendered session; optionally a light switched
    down (gain 0.6, gamma 1.4) or the feed frozen from a given time on."""
    from training.data.synth import render_session_frames

    lut = np.clip(255 * (np.arange(256) / 255.0) ** 1.4 * 0.6, 0, 255).astype(np.uint8)

    def frames():
        frozen = None
        for i, frame in enumerate(render_session_frames(spec, face_sources, upright=True)):
            t = i / spec.fps
            if light_step_at_s is not None and t >= light_step_at_s:
                frame = lut[frame]
            if freeze_at_s is not None and t >= freeze_at_s:
                frozen = frame if frozen is None else frozen
                frame = frozen
            yield frame

    return signal_path.run(frames(), [i / spec.fps for i in range(spec.n_frames)])


@pytest.mark.parametrize(
    ("subjects", "swap_to"), [(("grace_hopper", "astronaut"), "live"), (("lfw010", "lfw020"), "print")]
)
def test_a_rendered_swap_is_found_within_half_a_second(signal_path, face_sources, subjects, swap_to):
    from training.data.synth import SessionSpec

    spec = SessionSpec("swap", "swap", subjects, duration_s=3.5, fps=FPS, swap_at_s=1.7, swap_to=swap_to, seed=1)
    s = run_session(signal_path, face_sources, spec)
    swap = detect_swap(s.times, s.similarity_prev, s.shapes)
    assert swap.detected
    assert abs(swap.at_s - spec.swap_at_s) <= 0.5
    assert not detect_static(s.times, s.similarity_prev)


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("live", "grace_hopper"),
        ("live", "lfw010"),
        ("print", "astronaut"),
    ],  # print: a face turning (yaw, pitch) rigidly
)
def test_one_person_moving_turning_and_relit_is_no_swap(signal_path, face_sources, kind, subject):
    from training.data.synth import SessionSpec

    spec = SessionSpec(
        "one", kind, (subject,), duration_s=4.0, fps=FPS, blinks=((1.0, 0.2),) if kind == "live" else (), seed=2
    )
    s = run_session(signal_path, face_sources, spec, light_step_at_s=2.0)
    assert sum(shape is not None for shape in s.shapes) >= 40
    assert detect_swap(s.times, s.similarity_prev, s.shapes) == Swap(False, None)
    assert not detect_static(s.times, s.similarity_prev)


def test_a_frozen_feed_is_static_and_no_swap(signal_path, face_sources):
    from training.data.synth import SessionSpec

    spec = SessionSpec("frozen", "live", ("astronaut",), duration_s=4.0, fps=FPS, seed=4)
    s = run_session(signal_path, face_sources, spec, freeze_at_s=1.0)
    assert detect_static(s.times, s.similarity_prev)
    assert not detect_swap(s.times, s.similarity_prev, s.shapes).detected
