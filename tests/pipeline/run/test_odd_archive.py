"""Issue 18's held-out-style check: a folder of odd names and lying streams, and a manifest of
rows that share files, each give exactly one row per input with an honest status and reason."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

from pipeline.cli.main import main
from tests.helpers import sessions_by_id
from tests.videos import (
    face_frames,
    face_scene,
    write_cut_short,
    write_face_video,
    write_joined_clips,
    write_with_bad_packets,
)
from training.data.video_writer import write_video

TIMES = [i / 10 for i in range(20)]  # 2 s at 10 fps


@pytest.fixture(scope="module")
def odd_archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    face = write_face_video(root / "plain.mp4", n=20)
    for name in ("-starts-with-dash.mp4", "with space.mp4", "ünïcødé ☃.mp4", "$(touch pwned).mp4", "UPPER.MP4"):
        (root / name).write_bytes(face.read_bytes())
    with open(os.path.join(os.fsencode(root), b"latin1-caf\xe9.mp4"), "wb") as f:
        f.write(face.read_bytes())
    frames = list(face_frames(20))
    write_joined_clips(root / "restarts.mp4", [(frames, TIMES), (frames, TIMES)])  # the second clip starts at 0 again
    large = [face_scene(size=(1280, 960)) for _ in range(20)]
    write_joined_clips(root / "grows.mp4", [(frames, TIMES), (large, [2 + t for t in TIMES])])
    write_with_bad_packets(root / "bad_packet.mkv", face, frozenset({7}))
    long_face = write_face_video(root / "long.src.mp4", n=60)
    write_cut_short(root / "cut_short.mp4", long_face, keep=0.9)  # a 6 s header, half of it in frames
    long_face.unlink()
    write_video(root / "one_frame.mp4", iter([face_scene()]), fps=10.0)
    cv2.imwrite(str(root / "photo.jpg"), cv2.cvtColor(face_scene(), cv2.COLOR_RGB2BGR))
    (root / "photo.jpg").rename(root / "photo.mp4")  # a still image renamed
    return root


def test_every_odd_input_is_one_honest_row(odd_archive: Path, tmp_path: Path, ray_session, shipped_model):
    out = tmp_path / "out"
    # 640x480 frames pass, the 1280x960 ones that follow in grows.mp4 do not
    assert main(["scan", str(odd_archive), "--out", str(out), "--quiet", "--set", "decode.max_pixels=1000000"]) == 0
    rows = sessions_by_id(out)
    assert len(rows) == len(list(odd_archive.iterdir())) == 13
    failed = {sid: r["error"] for sid, r in rows.items() if r["status"] == "failed"}
    assert set(failed) == {"latin1-caf\\xe9", "grows"}, failed
    assert "not valid UTF-8" in failed["latin1-caf\\xe9"]
    assert "changes resolution to 1280x960 at 1." in failed["grows"]  # before: ok, reported as 640x480
    for sid in ("plain", "-starts-with-dash", "with space", "ünïcødé ☃", "$(touch pwned)", "UPPER"):
        assert (rows[sid]["status"], rows[sid]["error"], rows[sid]["frames_sampled"]) == ("ok", None, 20), sid
        assert rows[sid]["decode_end"] == "end" and "partial_decode" not in rows[sid]["reasons"]
    assert not (Path.cwd() / "pwned").exists() and not (odd_archive / "pwned").exists()
    restarts = rows["restarts"]  # before: the second clip was decoded but never sampled
    assert restarts["timestamp_resets"] == 1 and restarts["frames_sampled"] == 40
    assert restarts["examined_until_s"] == pytest.approx(4.0, abs=0.1) and restarts["coverage"] > 0.99
    for sid in ("bad_packet", "cut_short"):  # before: a bad packet failed the session, a cut one was ok
        row = rows[sid]
        assert row["status"] == "ok" and "partial_decode" in row["reasons"] and row["decision"] != "live", sid
    assert rows["bad_packet"]["bad_packets"] >= 1
    assert rows["cut_short"]["coverage"] < 0.95
    for sid in ("one_frame", "photo"):  # before: decided live
        assert rows[sid]["status"] == "ok" and "too_short" in rows[sid]["reasons"], sid
        assert rows[sid]["decision"] != "live"


def test_a_manifest_of_shared_and_odd_references_is_one_row_per_line(
    odd_archive: Path, tmp_path: Path, ray_session, shipped_model
):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "session_id,uri\n"
        f"a,{odd_archive / 'plain.mp4'}\n"
        f"b,{odd_archive / 'plain.mp4'}\n"  # two sessions, one file
        f"c,{odd_archive / 'restarts.mp4'}\n"
        "d,/proc/self/status\n"  # size 0, yet not empty
        f"e,{odd_archive / 'gone.mp4'}\n"
    )
    out = tmp_path / "out"
    assert main(["scan", str(manifest), "--out", str(out), "--quiet"]) == 0
    rows = sessions_by_id(out)
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert [rows[s]["status"] for s in "abc"] == ["ok", "ok", "ok"]
    assert rows["a"]["spoof_score"] == rows["b"]["spoof_score"] is not None
    assert rows["d"]["status"] == "failed" and "not a readable video container" in rows["d"]["error"]  # not "empty"
    assert rows["e"]["status"] == "failed" and rows["e"]["error"] == "file not found"
