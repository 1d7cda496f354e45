"""Every kind of bad input becomes a failed row with a readable reason while the run goes on;
worker and actor crashes are retried, replaced, and lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import psutil
import pytest

from pipeline.checkpoint import onnx_cache_path
from pipeline.cli.main import main
from pipeline.config import DecodeConfig, DetectConfig, SignalsConfig
from pipeline.faces.crop import CropSpec
from pipeline.scoring.model import read_card
from pipeline.session.analyse import analyse_session
from pipeline.video.sources import list_sessions
from tests.helpers import fill_disk, read_sessions, scan_process, sessions_by_id, small_tmpfs
from tests.videos import (
    write_audio_only,
    write_bit_flipped,
    write_empty,
    write_face_video,
    write_huge_resolution,
    write_no_face_video,
    write_text_as_video,
    write_truncated,
    write_unknown_codec,
)


@pytest.fixture(scope="module")
def bad_archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    face = write_face_video(root / "good.mp4", n=8)
    write_empty(root / "zero.mp4")
    write_truncated(root / "truncated.mp4", face)
    write_text_as_video(root / "not_video.mp4")
    write_audio_only(root / "audio_only.mp4")
    write_bit_flipped(root / "bit_flipped.mp4", face)
    write_unknown_codec(root / "unknown_codec.avi")
    write_huge_resolution(root / "huge.mp4")
    os.mkfifo(root / "fifo.mp4")  # opening it would block until a writer comes: refused at listing
    names = sorted(p.name for p in root.iterdir())
    (root / "manifest.csv").write_text(
        "session_id,uri\n" + "".join(f"{Path(n).stem},{n}\n" for n in names) + "nowhere,missing/nowhere.mp4\n"
    )
    return root


def test_every_bad_input_is_a_failed_row_and_the_run_goes_on(
    bad_archive: Path, tmp_path: Path, ray_session, shipped_model
):
    out = tmp_path / "out"
    # the timeout counts a session's time on its worker, the worker's first model loading included:
    # leave room for a cold start
    assert (
        main(["scan", str(bad_archive / "manifest.csv"), "--out", str(out), "--quiet", "--set", "decode.timeout_s=25"])
        == 0
    )
    got = sessions_by_id(out)
    assert got["good"]["status"] == "ok" and got["good"]["spoof_score"] is not None
    expected_errors = {
        "zero": "empty file",
        "truncated": "not a readable video container",  # the moov atom is at the end: cut off
        "not_video": "not a readable video",
        "audio_only": "no video stream (streams: audio)",
        "unknown_codec": "unsupported video codec",
        "huge": "resolution 4100x4100 exceeds",
        "fifo": "not a regular file (fifo)",
        "nowhere": "file not found",
    }
    for sid, reason in expected_errors.items():
        assert got[sid]["status"] == "failed", sid
        assert reason in got[sid]["error"], (sid, got[sid]["error"])
    # these 200 flipped bits land in the bitstream, not the container: ffmpeg conceals the damage,
    # every frame decodes and the session is scored (the rows say what was decoded)
    flipped = got["bit_flipped"]
    assert (flipped["status"], flipped["error"], flipped["frames_decoded"]) == ("ok", None, 8)
    assert flipped["frames_scored"] >= 1
    assert set(got) == set(expected_errors) | {"good", "bit_flipped"}


def test_a_session_past_its_timeout_is_a_failed_row(tmp_path: Path, ray_session, shipped_model):
    """A real, long session (20 s, analysed in several seconds) against a one-second timeout."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_face_video(inputs / "long.mp4", n=240, fps=12.0)
    out = tmp_path / "out"
    assert main(["scan", str(inputs), "--out", str(out), "--quiet", "--set", "decode.timeout_s=1"]) == 0
    row = sessions_by_id(out)["long"]
    assert row["status"] == "failed" and "timed out after 1 s" in row["error"]


def test_a_file_that_vanishes_after_listing_is_a_failed_analysis(tmp_path: Path):
    video = write_face_video(tmp_path / "soon_gone.mp4", n=4)
    [session] = list_sessions([str(video)], ["mp4"])
    video.unlink()
    result = analyse_session(session, DecodeConfig(), DetectConfig(), SignalsConfig(), crop=CropSpec(size=64))
    assert result.error == "file not found" and len(result.frames.records) == 0 and result.n_crops == 0


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_matching(proc: subprocess.Popen, match, times: int, timeout: float = 300) -> int:
    """SIGKILL a descendant of ``proc`` for which ``match(process)`` holds, ``times`` times; returns kills done."""
    killed, deadline = 0, time.monotonic() + timeout
    while killed < times and proc.poll() is None and time.monotonic() < deadline:
        for p in _descendants(proc.pid):
            try:
                if match(p):
                    p.send_signal(signal.SIGKILL)
                    killed += 1
                    time.sleep(1.0)
                    break
            except (psutil.Error, OSError):
                continue
        time.sleep(0.1)
    return killed


def test_a_session_that_keeps_crashing_its_worker_is_retried_then_failed(tmp_path: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_face_video(inputs / "fine.mp4", n=6)
    crasher = write_face_video(inputs / "crasher.mp4", n=240, fps=12.0)  # long: analysed for seconds

    def analysing_the_crasher(p: psutil.Process) -> bool:
        """``p`` is a worker with the crasher's video open (decoding it)."""
        return any(f.path == str(crasher) for f in p.open_files())

    proc = scan_process(inputs, tmp_path / "out", "--set", "ray.session_retries=2", "--set", "decode.timeout_s=300")
    killed = _kill_matching(proc, analysing_the_crasher, times=3)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert killed == 3  # the first try and both retries
    got = sessions_by_id(tmp_path / "out")
    assert got["fine"]["status"] == "ok"
    assert got["crasher"]["status"] == "failed" and "worker failed while analysing" in got["crasher"]["error"]


def test_a_scoring_actor_killed_mid_run_is_replaced_and_nothing_is_lost(tmp_path: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        write_face_video(inputs / f"v{i}.mp4", n=10)
    out = tmp_path / "out"
    # every face scheduled for the scorers: then a face frame without a score is a lost one
    proc = scan_process(inputs, out, "--set", "scoring.batch_size=4", "--set", "scoring.rate_hz=null")

    arenas = []

    def scoring_actor_after_first_commit(p: psutil.Process) -> bool:
        if "ScoringActor" in " ".join(p.cmdline()) and len(list(out.glob("sessions/*/*.parquet"))) >= 1:
            arenas.append(p.environ().get("MALLOC_ARENA_MAX"))
            return True
        return False

    killed = _kill_matching(proc, scoring_actor_after_first_commit, times=1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert killed == 1
    assert arenas == ["2"]  # the processes of a Ray the scan started get few malloc arenas
    got = sessions_by_id(out)
    assert sorted(got) == [f"v{i}" for i in range(6)]
    assert all(r["status"] == "ok" and r["frames_scored"] >= 4 for r in got.values())
    frames = duckdb.sql(
        f"select count(*) from read_parquet('{out}/frames/*/*.parquet') where spoof_score is null and n_faces > 0"
    ).fetchall()[0][0]
    assert frames == 0


def test_a_scoring_actor_that_fails_for_good_fails_its_sessions_with_a_reason(
    tmp_path: Path, ray_session, shipped_model
):
    """A corrupt cached ONNX export: the actor cannot start, every batch it is sent fails.
    The sessions with crops become failed rows naming the cause; the others are unaffected."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        write_face_video(inputs / f"face{i}.mp4", n=6)
    write_no_face_video(inputs / "empty_room.mp4")
    cache = tmp_path / "onnx"
    cached = onnx_cache_path("spoof", shipped_model, read_card(shipped_model), cache)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an onnx model")
    out = tmp_path / "out"
    argv = [
        "scan",
        str(inputs),
        "--out",
        str(out),
        "--quiet",
        "--backend",
        "onnx",
        "--set",
        f"scoring.onnx_cache={cache}",
    ]
    assert main(argv) == 0
    got = sessions_by_id(out)
    assert sorted(got) == ["empty_room", "face0", "face1", "face2"]
    for sid in ("face0", "face1", "face2"):
        assert got[sid]["status"] == "failed" and got[sid]["error"].startswith("scoring failed: "), got[sid]
        assert got[sid]["decision"] is None and got[sid]["width"] == 640
    assert got["empty_room"]["status"] == "no_face"
    # failed rows are committed: the ledger has them; without retries nothing is scanned twice
    assert main([*argv, "--set", "input.retry_failed=0"]) == 0
    assert len(read_sessions(out)) == 4


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_cleanly_and_the_next_run_resumes(tmp_path: Path, signum: int, code: int):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(8):
        write_face_video(inputs / f"v{i}.mp4", n=40)
    out = tmp_path / "out"
    proc = scan_process(inputs, out)
    deadline = time.monotonic() + 300
    while not list(out.glob("sessions/*/*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)  # the driver alone, as a scheduler's kill or a terminal's Ctrl-C would reach it
    _, err = proc.communicate(timeout=300)
    text = err.decode()
    assert proc.returncode == code, text[-2000:]
    assert "Traceback" not in text and "(raylet)" not in text
    assert f"stopped by {signal.Signals(signum).name}" in text
    kept = sessions_by_id(out)
    assert 1 <= len(kept) < 8  # what finished is committed, the rest is not
    rerun = scan_process(inputs, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    rows = duckdb.sql(f"select session_id, count(*) as n from '{out}/sessions/*/*.parquet' group by 1").fetchall()
    assert sorted(rows) == [(f"v{i}", 1) for i in range(8)]  # every input exactly once


def test_a_full_disk_is_a_clear_error_and_the_next_run_scans_each_session_once(tmp_path: Path):
    """A small tmpfs as the output, filled but for a little room: the scan commits what fits,
    stops with a message (no traceback), and after space is freed the same command finishes."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        write_face_video(inputs / f"v{i}.mp4", n=8)
    with small_tmpfs(tmp_path / "out", "8m") as out:
        filler = fill_disk(out, room=160 * 1024)  # about two sessions' room
        proc = scan_process(inputs, out)
        _, err = proc.communicate(timeout=300)
        text = err.decode()
        assert proc.returncode == 2, text[-2000:]
        assert "no space left on the output" in text and "run the same command again" in text
        assert "Traceback" not in text
        before = {sid for sid, _ in duckdb.sql(f"select session_id, 1 from '{out}/sessions/*/*.parquet'").fetchall()}
        assert len(before) < 6
        filler.unlink()
        rerun = scan_process(inputs, out)
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err.decode()[-2000:]
        rows = duckdb.sql(f"select session_id, count(*) from '{out}/sessions/*/*.parquet' group by 1").fetchall()
        assert sorted(rows) == [(f"v{i}", 1) for i in range(6)]  # every input exactly once


def test_a_row_says_how_much_of_a_long_video_was_examined(tmp_path: Path, ray_session, shipped_model):
    """Issue 18 item 3: past the ``decode.max_frames`` cap a video was "ok" with no word that
    only its first seconds were looked at."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_face_video(inputs / "long.mp4", n=40, fps=10.0)  # 4 s
    out = tmp_path / "out"
    assert main(["scan", str(inputs), "--out", str(out), "--quiet", "--set", "decode.max_frames=12"]) == 0
    row = sessions_by_id(out)["long"]
    assert row["frames_sampled"] == 12 and row["duration_s"] == pytest.approx(4.0, abs=0.15)
    # a 10 fps video sampled at 12 fps keeps every frame: 12 frames reach 1.1 s, plus one sampling slot
    assert row["examined_until_s"] == pytest.approx(1.1 + 1 / 12, abs=0.01)
    assert row["coverage"] == pytest.approx(row["examined_until_s"] / row["duration_s"], abs=1e-3)
    assert row["coverage"] < 0.3
    full = tmp_path / "full"
    assert main(["scan", str(inputs), "--out", str(full), "--quiet"]) == 0
    assert sessions_by_id(full)["long"]["coverage"] > 0.97
