"""The CLI end to end: real PyAV, MediaPipe, Ray and the shipped network; Parquet read back with pyarrow and DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipeline.checkpoint import save_checkpoint
from pipeline.cli.main import main
from pipeline.schema import FRAME_COLUMNS, SESSION_COLUMNS
from pipeline.scoring.model import ModelCard, create_model
from tests.helpers import sessions_by_id
from tests.videos import (
    write_empty,
    write_face_video,
    write_no_face_video,
    write_sideways_face_video,
    write_text_as_video,
)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    write_face_video(root / "face.mp4")
    (root / "phone uploads").mkdir()
    write_sideways_face_video(root / "phone uploads" / "sélfie 1.mp4")
    write_no_face_video(root / "no_face.mkv")
    write_empty(root / "empty.mp4")
    write_text_as_video(root / "text.mp4")
    return root


@pytest.fixture(scope="module")
def scanned(mixed_folder: Path, tmp_path_factory, ray_session, shipped_model) -> Path:
    out = tmp_path_factory.mktemp("reports")
    assert main(["scan", str(mixed_folder), "--out", str(out), "--quiet"]) == 0
    return out


def test_one_row_per_input_with_the_right_status(scanned: Path):
    rows = sessions_by_id(scanned)
    assert set(rows) == {"face", "phone uploads/sélfie 1", "no_face", "empty", "text"}
    assert {k: v["status"] for k, v in rows.items()} == {
        "face": "ok",
        "phone uploads/sélfie 1": "ok",
        "no_face": "no_face",
        "empty": "failed",
        "text": "failed",
    }


def test_failures_carry_a_reason(scanned: Path):
    rows = sessions_by_id(scanned)
    assert "empty" in rows["empty"]["error"]
    assert "not a readable video" in rows["text"]["error"]
    assert rows["face"]["error"] is None


def test_faces_are_found_in_the_sideways_phone_video(scanned: Path):
    phone = sessions_by_id(scanned)["phone uploads/sélfie 1"]
    assert phone["rotation"] == 90 and (phone["width"], phone["height"]) == (640, 480)
    assert phone["face_ratio"] > 0.8
    # the scorers take the faces of their schedule (scoring.rate_hz), not every one
    assert 3 <= phone["frames_scored"] < phone["frames_sampled"]


def test_scored_sessions_have_scores_and_decisions(scanned: Path):
    for sid in ("face", "phone uploads/sélfie 1"):
        row = sessions_by_id(scanned)[sid]
        assert 0.0 <= row["spoof_score"] <= row["spoof_score_max"] <= 1.0
        assert row["decision"] in ("live", "spoof", "review")
        assert row["model_version"] and row["run_id"] and row["scanned_at"] is not None
    assert sessions_by_id(scanned)["no_face"]["decision"] == "review"


def test_frames_dataset_matches_sessions(scanned: Path):
    counts = dict(
        duckdb.sql(
            f"select session_id, count(*) from read_parquet('{scanned}/frames/*/*.parquet') group by 1"
        ).fetchall()
    )
    rows = sessions_by_id(scanned)
    for sid, row in rows.items():
        assert counts.get(sid, 0) == row["frames_sampled"]
    scored = duckdb.sql(
        f"select count(*) from read_parquet('{scanned}/frames/*/*.parquet')"
        " where session_id = 'face' and spoof_score is not null"
    ).fetchall()[0][0]
    assert scored == rows["face"]["frames_scored"]


def test_every_contract_column_is_present_and_no_temporary_file_is_left(scanned: Path):
    for dataset, columns in (("sessions", SESSION_COLUMNS), ("frames", FRAME_COLUMNS)):
        got = duckdb.sql(
            f"select * from read_parquet('{scanned}/{dataset}/*/*.parquet', hive_partitioning=true) limit 0"
        ).columns
        assert set(columns) <= set(got) and "scan_date" in got
    assert not [p for p in scanned.rglob("*") if p.name.startswith(".")]
    assert list((scanned / "_runs").glob("*.json"))


def test_manifest_extra_columns_reach_the_output(mixed_folder: Path, tmp_path: Path, ray_session, shipped_model):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"session_id,uri,customer\nc-1,{mixed_folder / 'face.mp4'},4711\n")
    assert (
        main(["scan", str(manifest), "--out", str(tmp_path / "out"), "--quiet", "--set", "aggregate.method=median"])
        == 0
    )
    (row,) = sessions_by_id(tmp_path / "out").values()
    assert row["session_id"] == "c-1" and row["extra"] == [("customer", "4711")] and row["status"] == "ok"


def test_a_session_near_a_threshold_has_every_face_scored_by_the_deciders_only(
    mixed_folder: Path, tmp_path: Path, ray_session, shipped_model
):
    out = tmp_path / "out"
    # a band this wide puts every score near a decision edge: the session is refined
    assert main(["scan", str(mixed_folder / "face.mp4"), "--out", str(out), "--quiet",
                 "--set", "scoring.refine_band=0.99"]) == 0  # fmt: skip
    (row,) = sessions_by_id(out).values()
    frames = duckdb.sql(
        f"select count(*) filter (where n_faces > 0), count(reference_score), count(b2_score)"
        f" from read_parquet('{out}/frames/*/*.parquet')"
    ).fetchall()[0]
    faces, by_reference, by_b2 = frames
    # the reference decides: every face; the b2 informs: its schedule's faces only
    assert row["frames_scored"] == faces == by_reference > by_b2 >= 3
    assert row["b2_score"] is not None and row["reference_score"] is not None
    runs = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert [r["refined"] for r in runs] == [1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["scan", "{tmp}/missing", "--out", "{tmp}/out"], "no such file"),
        (["scan", "{videos}", "--out", "{tmp}/out", "--set", "decode.sample_fps=0"], "decode.sample_fps"),
        (["scan", "{videos}", "--out", "{tmp}/out", "--config", "{tmp}/nope.yaml"], "cannot read config"),
        (["scan", "{videos}", "--out", "{tmp}/out", "--model", "{tmp}/no_model"], "no model card"),
        (["scan", "{videos}", "--out", "{tmp}/out", "--model", "{tmp}/untrained"], "untrained"),
    ],
)
def test_bad_usage_exits_2_naming_the_problem_and_writes_nothing(
    argv, message, tmp_path: Path, mixed_folder: Path, capsys
):
    card = ModelCard()
    save_checkpoint(create_model(card), card, tmp_path / "untrained")
    argv = [a.format(tmp=tmp_path, videos=mixed_folder) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scan", "x", "--out", "y", "--no-such-flag"])
    assert exc.value.code == 2


def test_version_names_the_package_and_every_shipped_model(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("liveness ") and all(f"  {m}: " in out for m in ("b2", "reference", "occlusion", "identity"))
    assert "unreadable" not in out


def test_an_out_that_is_a_file_a_link_or_not_writable_is_refused_before_any_work(tmp_path, capsys):
    video = write_face_video(tmp_path / "v.mp4", n=4)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    (tmp_path / "a_file").write_text("mine\n")
    cases = {
        "a_file": "exists and is not a directory",
        "link": "is a symbolic link",
        "/proc/liveness-out": "is not writable",  # a file system nobody may create in, not even root
    }
    for out, message in cases.items():
        target = out if out.startswith("/") else str(tmp_path / out)
        assert main(["scan", str(video), "--out", target, "--quiet"]) == 2, out
        assert message in capsys.readouterr().err, out
    assert list(elsewhere.iterdir()) == [] and (tmp_path / "a_file").read_text() == "mine\n"


def test_a_quiet_run_prints_nothing_unless_there_is_something_to_warn_about(tmp_path):
    """Issue 27 item 3: ``--quiet`` (the README's cron line) printed the whole summary. A clean
    quiet run prints nothing at all; its summary is in ``_runs/<id>.json``. A failed session is
    one warning line on stderr, and stdout stays empty."""
    from tests.helpers import scan_process

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    write_face_video(inputs / "a.mp4", n=6)
    write_face_video(inputs / "b.mp4", n=6)
    proc = scan_process(inputs, out)
    printed, err = proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert (printed, err) == (b"", b"")
    [summary] = (out / "_runs").glob("*.json")
    assert json.loads(summary.read_text())["by_status"] == {"ok": 2}

    write_text_as_video(inputs / "broken.mp4")
    proc = scan_process(inputs, out)
    printed, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and printed == b""
    [line] = err.decode().splitlines()
    assert "WARNING 1 of 1 session(s) failed" in line and "_runs/" in line


def test_a_photo_held_up_beside_a_live_face_is_scored_and_judged_on_it(tmp_path: Path, ray_session, real_material):
    """The real clip where a man holds a phone replay and printed photos beside his face: the
    faces beside his are scored with his (through a refinement round too) and decide."""
    out = tmp_path / "out"
    clip = real_material / "videos" / "mixed" / "minifas_webcam_demo.mp4"
    assert main(["scan", str(clip), "--out", str(out), "--quiet", "--set", "links.enabled=false",
                 "--set", "scoring.refine_band=0.99"]) == 0  # fmt: skip
    (row,) = sessions_by_id(out).values()
    assert "other_face" in row["reasons"] and row["decision"] != "live"
    assert set(dict(row["other_scores"])) == {"b2", "reference"}
    assert dict(row["other_scores"])["reference"] == pytest.approx(row["other_spoof_score"])
    faces, top, deciding = duckdb.sql(
        f"select sum(other_faces_scored), max(other_spoof_score), count(reference_score)"
        f" from read_parquet('{out}/frames/*/*.parquet')"
    ).fetchall()[0]
    assert faces == row["other_faces_scored"] >= 8 and top >= row["other_spoof_score"]
    assert deciding == row["frames_scored"]  # refined: every main face scored besides the other faces
    shown = duckdb.sql(
        f"select e.frame_index, f.other_spoof_score from read_parquet('{out}/evidence/*/*.parquet') e"
        f" join read_parquet('{out}/frames/*/*.parquet') f using (session_id, frame_index) where kind = 'other_face'"
    ).fetchall()
    assert len(shown) == 1 and shown[0][1] == pytest.approx(top)
