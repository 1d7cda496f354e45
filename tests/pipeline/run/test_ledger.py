"""Incremental runs and exactly-once commits: the ledger, its recovery, and real runs killed part way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from datetime import UTC
from pathlib import Path

import duckdb
import pytest

from pipeline.cli.main import main
from pipeline.errors import LedgerBusy
from pipeline.reports.query import run_query
from pipeline.run.ledger import COMMITTED_DIR, UNCOMMITTED_DIR, Ledger, input_identity
from pipeline.run.output import RunWriter
from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR
from pipeline.scoring.registry import read_scorer_card
from pipeline.storage import Store
from tests.helpers import add_rows, kill_when, read_sessions, scan_process
from tests.videos import write_face_video, write_no_face_video


def session_counts(out: Path) -> dict[str, int]:
    if not list(out.glob("sessions/*/*.parquet")):
        return {}
    return dict(Counter(r["session_id"] for r in read_sessions(out)))


def frame_sessions(out: Path) -> dict[str, int]:
    """Frames per session, counting each session's rows once per committed scan."""
    if not list(out.glob("frames/*/*.parquet")):
        return {}
    return dict(
        duckdb.sql(
            f"select session_id, count(distinct run_id) from read_parquet('{out}/frames/*/*.parquet') group by 1"
        ).fetchall()
    )


# ------------------------------------------------------------------ units, no Ray


def test_input_identity_follows_size_and_mtime_or_content(tmp_path: Path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x" * 100)
    first = input_identity(str(video))
    os.utime(video, ns=(1_000_000_000, 2_000_000_000))
    assert input_identity(str(video)) != first
    content = input_identity(str(video), "content")
    os.utime(video, ns=(3_000_000_000, 4_000_000_000))
    assert input_identity(str(video), "content") == content and content.startswith("sha256:")
    assert input_identity(str(tmp_path / "gone.mp4")) == "missing"


def _rows(chunk: int) -> tuple[dict, list[dict]]:
    sid = f"s{chunk}"
    session = {
        "session_id": sid,
        "source": f"/v/{sid}.mp4",
        "status": "ok",
        "run_id": "r",
        "scanned_at": None,
        "input_key": f"key{chunk}",
    }
    return session, [{"session_id": sid, "frame_index": 0, "pts_s": 0.0, "n_faces": 1, "run_id": "r"}]


def _commit_chunks(out: Path, n: int) -> Store:
    from datetime import datetime

    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="run", scan_date="2026-11-23", sessions_per_file=1)
    for i in range(n):
        session, frames = _rows(i)
        add_rows(writer, session | {"scanned_at": datetime.now(UTC)}, frames)
    return store


def test_recovery_completes_or_sets_aside_every_crash_state(tmp_path: Path):
    store = _commit_chunks(tmp_path, 3)
    ledger = Ledger(store)
    assert ledger.attempts()[0] == {"key0", "key1", "key2"}
    # crash after the sessions file of chunk 1, before its ledger entry
    (tmp_path / COMMITTED_DIR / "run-00001.parquet").unlink()
    # crash after the frames file of chunk 2, before its sessions file
    (tmp_path / "sessions/scan_date=2026-11-23/run-00002.parquet").unlink()
    (tmp_path / COMMITTED_DIR / "run-00002.parquet").unlink()
    # crash while writing a file
    (tmp_path / "sessions/scan_date=2026-11-23/.run-00003.parquet.tmp").write_bytes(b"PAR1 half")
    # ... in any dataset (a kill in CI left one in fingerprints/)
    for dataset in ("identities", "fingerprints", "links"):
        (tmp_path / f"{dataset}/scan_date=2026-11-23").mkdir(parents=True)
        (tmp_path / f"{dataset}/scan_date=2026-11-23/.run-00003.parquet.1a2b3c4d.tmp").write_bytes(b"PAR1 half")
    assert ledger.attempts()[0] == {"key0", "key1"}  # what a dry run sees before recovery
    found = ledger.recover()
    assert found.ledger_rebuilt == ["run-00001"]
    assert found.set_aside == ["frames/scan_date=2026-11-23/run-00002.parquet"]
    assert found.temporaries_removed == 4
    assert not list(tmp_path.rglob(".*.tmp"))
    assert ledger.attempts()[0] == {"key0", "key1"}
    assert (tmp_path / UNCOMMITTED_DIR / "frames/scan_date=2026-11-23/run-00002.parquet").is_file()
    assert sorted(p.name for p in tmp_path.glob("frames/*/*.parquet")) == ["run-00000.parquet", "run-00001.parquet"]
    assert not ledger.recover()  # nothing left to do


def test_a_second_writer_is_refused(tmp_path: Path):
    first, second = Ledger(Store(tmp_path)), Ledger(Store(tmp_path))
    first.lock()
    try:
        with pytest.raises(LedgerBusy, match="another liveness run"):
            second.lock()
    finally:
        first.unlock()
    second.lock()
    second.unlock()


# ------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nightly")
    write_face_video(root / "a.mp4", n=8)
    write_no_face_video(root / "b.mp4", n=6)
    return root


def test_incremental_runs_rescan_and_new_model(archive: Path, tmp_path: Path, ray_session, shipped_model, capsys):
    out = tmp_path / "out"
    assert main(["scan", str(archive), "--out", str(out), "--quiet"]) == 0
    assert session_counts(out) == {"a": 1, "b": 1}

    assert main(["scan", str(archive), "--out", str(out), "--quiet"]) == 0  # same command: nothing new
    assert session_counts(out) == {"a": 1, "b": 1}
    assert frame_sessions(out) == {"a": 1, "b": 1}
    runs = sorted((out / "_runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(runs[-1].read_text())["skipped"] == 2

    write_face_video(archive / "c.mp4", n=6)
    capsys.readouterr()
    assert main(["scan", str(archive), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "scan\tc\t" in listing and "skip\ta\t" in listing and "1 to scan, 2 skipped" in listing
    assert "c" not in session_counts(out)  # a dry run writes nothing

    assert main(["scan", str(archive), "--out", str(out), "--quiet"]) == 0  # the new file only
    assert session_counts(out) == {"a": 1, "b": 1, "c": 1}

    assert main(["scan", str(archive / "a.mp4"), "--out", str(out), "--quiet", "--rescan"]) == 0
    assert session_counts(out) == {"a": 2, "b": 1, "c": 1}

    model = shutil.copytree(shipped_model, tmp_path / "model-v2")
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps(card | {"version": "test-v2"}))
    assert main(["scan", str(archive), "--out", str(out), "--quiet", "--model", str(model)]) == 0
    versions: dict[str, set[str]] = {}
    for r in read_sessions(out):
        versions.setdefault(r["session_id"], set()).add(r["model_version"])
    reference = read_scorer_card(DEFAULT_REFERENCE_DIR).version  # model_version joins every scorer's version
    assert {sid: sorted(v) for sid, v in versions.items()} == {
        s: sorted([f"{card['version']}+{reference}", f"test-v2+{reference}"]) for s in ("a", "b", "c")
    }


def _scan_process(inputs: Path, out: Path) -> subprocess.Popen:
    return scan_process(
        inputs,
        out,
        "--set",
        "ray.num_cpus=2",
        "--set",
        "scoring.batch_size=4",  # small batches: sessions commit one by one, not all in one last batch
        stdout=subprocess.DEVNULL,
        env=os.environ | {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"},
    )


def _kill_after(proc: subprocess.Popen, out: Path, committed: int) -> int:
    """SIGKILL the run (and so its Ray processes, which share the driver's fate) once ``committed`` sessions files
    exist; returns how many there were."""
    kill_when(proc, lambda: len(list(out.glob("sessions/*/*.parquet"))) >= committed, timeout=240, poll_s=0.02)
    return len(list(out.glob("sessions/*/*.parquet")))


@pytest.mark.parametrize("kill_points", [(0, 2, 5)], ids=["before-any-commit,after-2,after-5"])
def test_runs_killed_at_several_points_end_with_every_session_exactly_once(tmp_path_factory, kill_points):
    inputs = tmp_path_factory.mktemp("kill-inputs")
    for i in range(10):
        (write_face_video if i % 2 == 0 else write_no_face_video)(inputs / f"v{i}.mp4", n=6)
    out = tmp_path_factory.mktemp("kill-out")
    seen = []
    for point in kill_points:
        seen.append(_kill_after(_scan_process(inputs, out), out, point))
    final = _scan_process(inputs, out)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err.decode()[-2000:]
    assert seen == sorted(seen) and seen[-1] < 10, f"kills did not land mid-run: {seen}"
    assert session_counts(out) == {f"v{i}": 1 for i in range(10)}
    assert set(frame_sessions(out).values()) == {1}
    assert not list(out.rglob(".*.tmp"))


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path):
    """Issue 18 item 8: a symlinked ``_ledger/lock`` created a file where it pointed."""
    from pipeline.errors import UsageError

    out = tmp_path / "out"
    (out / "_ledger").mkdir(parents=True)
    target = tmp_path / "elsewhere" / "precious"
    (out / "_ledger" / "lock").symlink_to(target)
    ledger = Ledger(Store(out))
    with pytest.raises(UsageError, match="is a symbolic link"):
        ledger.lock()
    assert not target.exists()
    target.parent.mkdir()
    target.write_text("keep")
    with pytest.raises(UsageError, match="is a symbolic link"):
        ledger.lock()
    assert target.read_text() == "keep"


def test_a_failed_session_is_tried_again_by_later_runs_up_to_the_limit(
    tmp_path: Path, ray_session, shipped_model, capsys
):
    """Issue 18 item 4: a timed-out session stayed "done" after the timeout was raised."""
    archive = tmp_path / "in"
    archive.mkdir()
    write_face_video(archive / "a.mp4", n=150)  # 15 s: its analysis takes far longer than the short timeout
    out = tmp_path / "out"
    short = ["--set", "decode.timeout_s=0.2"]
    assert main(["scan", str(archive), "--out", str(out), "--quiet", *short]) == 0
    assert main(["scan", str(archive), "--out", str(out), "--quiet", *short]) == 0
    failed = read_sessions(out)
    assert [r["status"] for r in failed] == ["failed", "failed"] and "timed out" in failed[0]["error"]
    capsys.readouterr()
    assert main(["scan", str(archive), "--out", str(out), "--dry-run"]) == 0
    assert "failed before: tried again (attempt 3 of 3)" in capsys.readouterr().out
    assert main(["scan", str(archive), "--out", str(out), "--quiet"]) == 0  # the cause is fixed: it goes through
    statuses = [r["status"] for r in sorted(read_sessions(out), key=lambda r: r["scanned_at"])]
    assert statuses == ["failed", "failed", "ok"]  # the history is kept; the latest row is the answer
    view = run_query(str(out), "select session_id, status from sessions").to_pylist()
    assert view == [{"session_id": "a", "status": "ok"}]  # what an analyst counts: the answer, once
    assert len(run_query(str(out), "select * from session_history")) == 3
    capsys.readouterr()
    assert main(["scan", str(archive), "--out", str(out), "--dry-run"]) == 0
    assert "0 to scan, 1 skipped" in capsys.readouterr().out
    write_face_video(archive / "b.mp4", n=150)
    args = ["scan", str(archive), "--out", str(out), "--quiet", *short]
    assert main([*args, "--set", "input.retry_failed=0"]) == 0
    capsys.readouterr()
    assert main(["scan", str(archive), "--out", str(out), "--dry-run", "--set", "input.retry_failed=0"]) == 0
    assert "0 to scan, 2 skipped" in capsys.readouterr().out  # no retries asked: b stays failed
