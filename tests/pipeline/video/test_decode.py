from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DecodeError
from pipeline.video.decode import VideoReader, sample_times, upright
from tests.videos import (
    write_empty,
    write_no_face_video,
    write_sideways_face_video,
    write_text_as_video,
    write_truncated,
)
from training.video_writer import write_video


def test_sample_times_takes_one_frame_per_slot():
    times = [i / 30 for i in range(90)]  # 3 s at 30 fps
    kept = sample_times(times, sample_fps=5, max_frames=100)
    assert len(kept) == 15
    assert [round(times[i], 3) for i in kept[:3]] == [0.0, 0.2, 0.4]


def test_sample_times_on_variable_frame_rate_follows_time_not_counts():
    times = [0.0, 0.01, 0.02, 0.03, 0.04, 0.5, 1.0, 1.01, 1.02, 2.5]
    kept = sample_times(times, sample_fps=2, max_frames=100)
    assert [times[i] for i in kept] == [0.0, 0.5, 1.0, 2.5]


def test_sample_times_respects_the_cap():
    assert len(sample_times([i / 10 for i in range(100)], 10, 7)) == 7


def test_vfr_file_is_sampled_by_timestamps(tmp_path: Path):
    times = [0.0, 0.02, 0.04, 0.06, 0.5, 0.52, 1.0, 2.0, 2.04, 3.0]
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(len(times))]
    path = write_video(tmp_path / "vfr.mp4", frames, times_s=times)
    with VideoReader(path, sample_fps=2, max_frames=100) as video:
        got = [round(f.pts_s, 2) for f in video.sampled()]
        assert video.frames_decoded == len(times)
    assert got == [0.0, 0.5, 1.0, 2.0, 3.0]


def test_upright_turns_counter_clockwise():
    a = np.array([[1, 2], [3, 4]])
    assert np.array_equal(upright(a, 90), np.array([[2, 4], [1, 3]]))
    assert np.array_equal(upright(a, -90), np.array([[3, 1], [4, 2]]))
    assert upright(a, 0) is a


def test_rotation_tag_is_applied(tmp_path: Path):
    path = write_sideways_face_video(tmp_path / "phone.mp4", n=4)
    with VideoReader(path, sample_fps=10) as video:
        frames = list(video.sampled())
        assert video.header.width == 480 and video.header.height == 640  # stored sideways
        assert video.rotation == 90
    assert frames[0].image.shape == (480, 640, 3)  # displayed upright


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: write_empty(p / "empty.mp4"), "empty file"),
        (lambda p: write_text_as_video(p / "text.mp4"), "not a readable video"),
    ],
)
def test_broken_files_raise_a_readable_decode_error(tmp_path: Path, make, reason):
    with pytest.raises(DecodeError, match=reason):
        VideoReader(make(tmp_path))


def test_missing_file(tmp_path: Path):
    with pytest.raises(DecodeError, match="not found"):
        VideoReader(tmp_path / "gone.mp4")


def test_truncated_file_fails_or_decodes_partially(tmp_path: Path):
    source = write_no_face_video(tmp_path / "ok.mp4", n=30)
    path = write_truncated(tmp_path / "cut.mp4", source)
    with pytest.raises(DecodeError):
        with VideoReader(path) as video:
            list(video.sampled())


def test_absurd_resolution_is_refused(tmp_path: Path):
    path = write_no_face_video(tmp_path / "v.mp4", n=3)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        VideoReader(path, max_pixels=1000)


def test_provenance_tags_and_measured_timing(tmp_path: Path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(10)]
    steady = write_video(tmp_path / "steady.mp4", frames, fps=10.0)
    doubled = write_video(tmp_path / "doubled.mp4", [f for f in frames for _ in range(2)], fps=10.0)  # each frame twice
    uneven = [0.0, 0.1, 0.2, 0.5, 0.6, 0.7, 1.2, 1.3, 1.4, 1.5]
    jittery = write_video(tmp_path / "jittery.mp4", frames, fps=10.0, times_s=uneven)
    facts = {}
    for name, path in (("steady", steady), ("doubled", doubled), ("jittery", jittery)):
        with VideoReader(path, sample_fps=30, max_frames=100) as video:
            list(video.sampled())
            facts[name] = video.provenance()
    assert facts["steady"].container is not None and "mp4" in facts["steady"].container
    assert (facts["steady"].encoder or "").startswith("Lavf")  # written by FFmpeg's muxer (PyAV)
    assert facts["steady"].frame_interval_cv == pytest.approx(0.0, abs=0.01)
    assert facts["steady"].repeated_frame_ratio == 0.0
    assert facts["doubled"].repeated_frame_ratio == pytest.approx(10 / 19, abs=0.06)
    assert (facts["jittery"].frame_interval_cv or 0.0) > 0.3
