from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DecodeError
from pipeline.video.decode import VideoReader, sample_times, upright
from tests.videos import (
    write_cut_short,
    write_empty,
    write_joined_clips,
    write_many_streams,
    write_no_face_video,
    write_sideways_face_video,
    write_text_as_video,
    write_truncated,
    write_with_bad_packets,
)
from training.data.video_writer import write_video


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


def _noise_clip(n: int, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[np.ndarray]:
    w, h = size
    base = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def _read(path: Path, **kwargs) -> tuple[list[float], VideoReader]:
    with VideoReader(path, **{"sample_fps": 10, "max_frames": 1000, **kwargs}) as video:
        times = [f.pts_s for f in video.sampled()]
    return times, video


def test_a_healthy_file_is_read_to_its_end_and_the_frame_cap_is_said(tmp_path: Path):
    path = write_video(tmp_path / "ok.mp4", _noise_clip(30), fps=10.0)
    times, video = _read(path)
    report = video.report()
    assert (len(times), report.end, report.bad_packets, report.timestamp_resets, report.size_changes) == (
        30, "end", 0, 0, 0,
    )  # fmt: skip
    assert report.decoded_until_s == pytest.approx(3.0) and report.header_frames == 30
    assert not report.partial(video.header.duration_s, video.frames_decoded)
    _, capped = _read(path, max_frames=5)
    assert capped.report().end == "frame_cap"
    assert not capped.report().partial(capped.header.duration_s, capped.frames_decoded)  # the cap is no fault


def test_clips_whose_timestamps_restart_are_all_sampled_on_one_timeline(tmp_path: Path):
    first, second = [i / 10 for i in range(30)], [i / 10 for i in range(20)]  # the second starts at 0 again
    path = write_joined_clips(tmp_path / "joined.ts", [(_noise_clip(30), first), (_noise_clip(20, seed=1), second)])
    times, video = _read(path)
    assert len(times) == 50  # before: the second clip was decoded but never sampled
    assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(4.9)
    assert video.report().timestamp_resets == 1


def test_a_resolution_change_is_counted_and_a_frame_over_the_limit_fails(tmp_path: Path):
    small, large = (
        (_noise_clip(10), [i / 10 for i in range(10)]),
        (_noise_clip(10, (640, 480)), [2 + i / 10 for i in range(10)]),
    )
    path = write_joined_clips(tmp_path / "grows.ts", [small, large])
    times, video = _read(path)
    assert (video.header.width, video.header.height, video.report().size_changes) == (320, 240, 1)
    assert sum(t >= 1.0 for t in times) >= 8  # the larger clip is examined too (the join may cost a frame)
    with pytest.raises(DecodeError, match=r"changes resolution to 640x480 at 1\.\d+ s, over the limit of 100000"):
        _read(path, max_pixels=100_000)  # the header's 320x240 is under it: before, the 640x480 frames passed


def test_a_bad_packet_is_skipped_and_counted_not_the_whole_video_failed(tmp_path: Path):
    source = write_video(tmp_path / "ok.mp4", _noise_clip(40), fps=10.0)
    path = write_with_bad_packets(tmp_path / "bad.mkv", source, frozenset({5}))
    times, video = _read(path)
    report = video.report()
    assert report.bad_packets == 1 and report.end == "end"
    assert 30 <= len(times) < 40  # the frames after it still come (before: DecodeError after 3 frames)
    assert report.partial(video.header.duration_s, video.frames_decoded)
    with pytest.raises(DecodeError, match=r"no decodable frame \(1 packet\(s\) rejected"):
        _read(write_with_bad_packets(tmp_path / "key.mkv", source, frozenset({0})))  # nothing without the key frame


def test_a_file_shorter_than_its_header_is_partial(tmp_path: Path):
    source = write_video(tmp_path / "ok.mp4", _noise_clip(60), fps=10.0)
    path = write_cut_short(tmp_path / "cut.mp4", source, keep=0.7)
    times, video = _read(path)
    report = video.report()
    assert report.header_frames == 60 and 0 < video.frames_decoded < 57
    assert report.partial(video.header.duration_s, video.frames_decoded)  # before: ok, as if it were whole


def test_a_session_has_a_budget_of_decoded_pixels(tmp_path: Path):
    path = write_video(tmp_path / "ok.mp4", _noise_clip(30), fps=10.0)
    with pytest.raises(DecodeError, match=r"decoding budget spent: .* in 14 frames .*max_decoded_pixels = 1e\+06"):
        _read(path, max_decoded_pixels=1e6)  # 320 x 240 = 76,800 pixels a frame: the 14th is over


def test_a_list_of_other_files_named_like_a_video_is_refused_with_what_it_is(tmp_path: Path):
    """Issue 18 item 8: an ffconcat list named .mp4 that names a file outside the folder was
    "permission denied" (the file itself is readable); one naming a video beside it was scanned
    as that other video."""
    write_video(tmp_path / "other.mp4", _noise_clip(5), fps=10.0)
    outside = tmp_path / "outside.mp4"
    outside.write_text("ffconcat version 1.0\nfile /etc/hostname\n")
    with pytest.raises(DecodeError, match="refers to other files that may not be read"):
        VideoReader(outside)
    beside = tmp_path / "beside.mp4"
    beside.write_text("ffconcat version 1.0\nfile other.mp4\n")
    with pytest.raises(DecodeError, match=r"a list of other files \(concat\), not a video"):
        VideoReader(beside)


def test_a_file_that_says_size_0_but_holds_bytes_is_not_called_empty():
    """Issue 18 item 8: /proc files report size 0 and were "empty file (0 bytes)"."""
    with pytest.raises(DecodeError, match="not a readable video container"):
        VideoReader("/proc/self/status")


def test_a_container_beyond_ffmpegs_stream_limit_says_so(tmp_path: Path):
    """Issue 18 item 8: more than 1000 streams was "Cannot allocate memory" (ffmpeg's ENOMEM)."""
    path = write_many_streams(tmp_path / "streams.mp4", 1001)
    with pytest.raises(DecodeError, match="beyond what ffmpeg accepts.*more than its limit of 1000 streams"):
        VideoReader(path)
    with VideoReader(write_many_streams(tmp_path / "fine.mp4", 3)) as video:  # the fixture is a video
        list(video.sampled())
        assert video.frames_decoded == 3


def test_ffmpeg_logs_never_reach_python():
    """A fresh clone's test run hung in avcodec_free_context: with any PyAV log level set, the
    frame-threaded decoder's threads call a Python log callback, and freeing a decoder stopped
    at the frame cap waited for them while they waited for the GIL (PyAV-Org/PyAV#909)."""
    import av.logging

    import pipeline.video.decode  # noqa: F401  (sets the level on import)

    assert av.logging.get_level() is None
