from pathlib import Path

import numpy as np

from pipeline.config import LinksConfig
from pipeline.links.video import FingerprintIndex, same_recording
from pipeline.video.decode import VideoReader
from pipeline.video.fingerprint import Fingerprint, FingerprintTrack, hamming
from tests.videos import write_reencoded
from training.synth import SessionSpec, render_session_frames
from training.video_writer import write_video


def fingerprint(path: Path, hz: float = 2.0) -> Fingerprint:
    track = FingerprintTrack(hz)
    with VideoReader(path, sample_fps=12) as video:
        for frame in video.sampled():
            track.add(frame.pts_s, frame.image)
    return track.finish()


def test_a_copy_reencoded_resized_and_trimmed_is_the_same_recording_and_another_take_is_not(face_sources, tmp_path):
    config = LinksConfig()
    spec = SessionSpec("a", "live", ("astronaut",), 4.0, seed=11)
    original = write_video(tmp_path / "a.mp4", render_session_frames(spec, face_sources), fps=spec.fps)
    copy = write_reencoded(original, tmp_path / "copy.mp4", scale=0.5, skip_s=0.7)
    other_take = SessionSpec("b", "live", ("astronaut",), 4.0, seed=12)  # same person, another recording
    other = write_video(tmp_path / "b.mp4", render_session_frames(other_take, face_sources), fps=spec.fps)
    fa, fc, fb = fingerprint(original), fingerprint(copy), fingerprint(other)
    share = same_recording(fa, fc, config)
    assert share is not None and share >= config.min_matched
    assert same_recording(fa, fb, config) is None
    index = FingerprintIndex()
    index.add(fb)
    index.add(fa)
    assert [row for row, _ in index.matches(fc, config)] == [1]


def test_hamming_counts_differing_bits():
    a = np.array([0, 0xFF], np.uint64)
    assert hamming(a, np.array([1, 0xF0, 2**63], np.uint64)).tolist() == [[1, 4, 1], [7, 4, 9]]


def test_the_index_keeps_its_own_copy_of_a_fingerprint():
    """A fingerprint from a Ray worker is a view into the worker's whole result (the session's
    crops too): the index must not keep that buffer alive for the rest of the run."""
    buffer = np.arange(64, dtype=np.uint64)  # stands for the result a fingerprint is a view into
    fingerprint = Fingerprint(np.linspace(0.0, 1.5, 4), buffer[8:12])
    index = FingerprintIndex()
    row = index.add(fingerprint)
    stored = index.fingerprints[row]
    assert not np.shares_memory(stored.hashes, buffer) and not np.shares_memory(stored.times, fingerprint.times)
    assert stored.hashes.tolist() == fingerprint.hashes.tolist()
