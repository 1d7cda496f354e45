"""When the expensive stages run: on a schedule, densely after an event, every frame without a rate."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.session.frame_path import BoxCalibration, points_box
from pipeline.session.schedule import StageSchedule
from pipeline.signals.blinks import EyeCue, EyesClosing

TIMES = [i / 12 for i in range(48)]  # 4 s sampled at 12 fps


def test_a_stage_runs_at_its_rate_on_the_sampled_frames():
    schedule = StageSchedule(rate_hz=3.0)
    taken = [t for t in TIMES if schedule.take(t)]
    assert len(taken) == 12  # 3 a second for 4 s
    assert np.allclose(np.diff(taken), 1 / 3, atol=1e-6)


def test_an_event_makes_every_frame_due_for_dense_s_then_the_schedule_resumes():
    schedule = StageSchedule(rate_hz=1.0, dense_s=0.5)
    taken = []
    for t in TIMES:
        if abs(t - 1.5) < 1e-9:
            schedule.event(t)
        if schedule.take(t):
            taken.append(round(t, 3))
    dense = [round(t, 3) for t in TIMES if 1.5 <= t <= 2.0 + 1e-3]
    assert set(dense) <= set(taken)  # no frame of the event's half second missed
    assert set(taken) - set(dense) == {0.0, 1.0, 3.0}  # the 1 Hz schedule around it (2.0 fell in the stretch)


def test_no_rate_means_every_frame_and_reset_starts_a_new_session():
    every = StageSchedule(rate_hz=None)
    assert all(every.take(t) for t in TIMES)
    schedule = StageSchedule(rate_hz=0.5)
    assert [schedule.take(t) for t in (0.0, 0.5, 1.0)] == [True, False, False]
    schedule.reset()
    assert schedule.take(0.5)
    with pytest.raises(ValueError):
        StageSchedule(rate_hz=0.0)


def test_eyes_closing_is_a_drop_under_the_recent_open_level():
    eyes = EyesClosing(EyeCue(ratio=0.85, window_s=1.0))
    ears = [0.30] * 6 + [0.22, 0.12, 0.20, 0.29] + [0.30] * 4
    closing = [eyes.add(i / 12, e) for i, e in enumerate(ears)]
    assert closing == [False] * 6 + [True, True, True, False] + [False] * 4
    assert not eyes.add(2.0, float("nan"))  # an unreadable eye is no cue


def test_a_tracked_box_is_cut_where_the_detector_would_have_put_it():
    detected = (100.0, 80.0, 60.0, 70.0)
    points = np.array([[95.0, 70.0], [165.0, 70.0], [95.0, 160.0], [165.0, 160.0]], np.float32)
    calibration = BoxCalibration.measure(detected, points_box(points))
    assert calibration is not None
    assert np.allclose(calibration.apply(points_box(points)), detected)
    moved = points + np.float32([40.0, -10.0])  # the face moved: the box moves with it, same size
    assert np.allclose(calibration.apply(points_box(moved)), (140.0, 70.0, 60.0, 70.0))
    assert BoxCalibration.measure(detected, (0.0, 0.0, 0.0, 5.0)) is None
