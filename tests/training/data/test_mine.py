"""liveness mine: labelled crops from committed scans (verdicts first, then the teacher's
confident scores), re-read from the source videos, split by identity cluster, incremental."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.faces.crop import CropSpec
from pipeline.reports.query import run_query
from pipeline.video.decode import VideoReader
from training.data.mine import MineConfig, label_session, soft_target, spread
from training.data.preprocess import read_image_rgb

CONFIG = MineConfig(live_below=0.2, spoof_above=0.9)


def _row(**kw) -> dict:
    return {"status": "ok", "scores": {"reference": 0.5}, "reasons": [], "verdict": None, "attack": None} | kw


@pytest.mark.parametrize(
    ("row", "outcome"),
    [
        (_row(verdict="spoof", attack="replay", scores={"reference": 0.01}), ("spoof", "replay", "verdict")),
        (_row(verdict="spoof"), ("spoof", "unknown", "verdict")),
        (_row(verdict="live", status="failed"), ("live", "none", "verdict")),
        (_row(verdict="unsure", scores={"reference": 0.99}), "verdict unsure"),
        (_row(scores={"reference": 0.1}), ("live", "none", "teacher")),
        (_row(scores={"reference": 0.1}, reasons=["swap"]), "signal fired"),
        (_row(scores={"reference": 0.1}, reasons=["spoof_score:b2"]), ("live", "none", "teacher")),
        (_row(scores={"reference": 0.95}, reasons=["swap"]), ("spoof", "unknown", "teacher")),
        (_row(scores={"reference": 0.5}), "teacher not confident"),
        (_row(scores={"b2": 0.01}), "no reference score"),
        (_row(status="no_face", scores=None), "status no_face"),
    ],
)
def test_labels_verdicts_first_then_the_teacher_where_it_is_confident(row, outcome):
    assert label_session(row, CONFIG) == outcome


def test_spread_takes_first_last_and_evenly_between():
    assert spread(3, 8) == [0, 1, 2]
    assert spread(10, 4) == [0, 3, 6, 9]


def _crops(data: Path) -> list[dict]:
    with open(data / "crops.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_mining_a_scan_then_mining_it_again(labelled_scan: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    shutil.copytree(labelled_scan, out)
    data = tmp_path / "data"
    verdicts = tmp_path / "v.csv"
    verdicts.write_text("session_id,verdict,attack\nprint0,spoof,print\nlive0,live,\n")
    assert main(["verdicts", "add", str(verdicts), "--out", str(out)]) == 0
    args = ["mine", "--out", str(out), "--to", str(data), "--set", "size=64", "--set", "crops_per_session=3"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report == json.loads((data / "mine_report.json").read_text())
    assert report["sessions"]["verdict/spoof"] == 1 and report["sessions"]["verdict/live"] == 1
    assert sum(report["sessions"].values()) + sum(report["left_out"].values()) == 4  # every session accounted for
    rows = _crops(data)
    by_session = {r["session_id"]: r for r in rows}
    assert by_session["print0"]["path"].startswith("spoof/print/") and by_session["print0"]["label"] == "spoof"
    assert by_session["live0"]["label_source"] == "verdict" and sum(r["session_id"] == "live0" for r in rows) == 3
    # each crop is the crop of the scanned frame at its time and stored face box
    frames = run_query(str(out), "select pts_s, bbox_x, bbox_y, bbox_w, bbox_h from frames "
                       "where session_id = 'print0' and bbox_w > 0 order by pts_s").to_pylist()  # fmt: skip
    first = next(r for r in rows if r["session_id"] == "print0")
    assert float(first["pts_s"]) == pytest.approx(frames[0]["pts_s"], abs=1e-6)
    source = run_query(str(out), "select source from sessions where session_id = 'print0'").column(0)[0].as_py()
    with VideoReader(source, sample_fps=1000, max_frames=1) as video:
        image = next(video.sampled()).image
    box = tuple(frames[0][k] for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
    assert np.array_equal(read_image_rgb(data / first["path"]), CropSpec(64, 1.6).crop(image, box))
    # sessions of one identity cluster share a subject, hence a split
    clusters = run_query(str(out), "select session_id, cluster_id from clusters").to_pylist()
    for a in clusters:
        for b in clusters:
            if a["cluster_id"] == b["cluster_id"] and a["session_id"] in by_session and b["session_id"] in by_session:
                assert by_session[a["session_id"]]["subject"] == by_session[b["session_id"]]["subject"]
    # again: nothing new to read; a changed verdict relabels, an unsure one drops the session
    assert main(args) == 0
    again = json.loads((data / "mine_report.json").read_text())
    assert again["new_sessions"] == 0 and _crops(data) == rows
    verdicts.write_text("session_id,verdict\nlive0,spoof\nprint0,unsure\nlive1,live\n")
    assert main(["verdicts", "add", str(verdicts), "--out", str(out)]) == 0
    assert main(args) == 0
    final = json.loads((data / "mine_report.json").read_text())
    assert final["relabelled"] == 1 and final["dropped"] == 1
    after = _crops(data)
    assert {r["label"] for r in after if r["session_id"] == "live0"} == {"spoof"}
    assert {r["label_source"] for r in after if r["session_id"] == "live1"} == {"verdict"}
    assert not any(r["session_id"] == "print0" for r in after)
    assert all((data / r["path"]).is_file() for r in after)
    assert not (data / by_session["print0"]["path"]).exists()


def test_refused_before_anything_is_written(labelled_scan: Path, tmp_path: Path, capsys):
    data = tmp_path / "data"
    assert main(["mine", "--out", str(tmp_path / "empty"), "--to", str(data)]) == 2
    assert "holds no committed scan" in capsys.readouterr().err
    args = ["mine", "--out", str(labelled_scan), "--to", str(data), "--set", "spoof_above=0.9999", "--set",
            "live_below=0.0001"]  # fmt: skip
    assert main(args) == 2  # the teacher is confident about nothing: no label of either class
    assert "a model needs live and spoof" in capsys.readouterr().err
    assert main(["mine", "--out", str(labelled_scan), "--to", str(data), "--set", "live_below=0.99"]) == 2
    assert "live_below (0.99) must be below spoof_above" in capsys.readouterr().err
    assert not data.exists()


@pytest.mark.parametrize(
    ("p", "fired", "target"),
    [(0.97, False, 0.97), (0.03, False, 0.03), (0.6, False, None), (None, False, None), (0.03, True, None),
     (0.97, True, 0.97)],
)  # fmt: skip
def test_a_soft_target_is_the_teachers_probability_where_it_is_sure(p, fired, target):
    assert soft_target(p, 0.9, fired) == target


def test_soft_targets_distil_the_teachers_confident_frames(labelled_scan: Path, tmp_path: Path):
    data = tmp_path / "soft"
    settings = {"size": 64, "crops_per_session": 100, "soft_targets": "true", "soft_floor": 0.6,
                "live_below": 0.01, "spoof_above": 0.99}  # fmt: skip
    args = ["mine", "--out", str(labelled_scan), "--to", str(data)]
    assert main([*args, *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]) == 0
    rows = _crops(data)
    frames = run_query(str(labelled_scan), "select session_id, pts_s, scores['reference'] as p from frames"
                       " where scores['reference'] is not null").to_pylist()  # fmt: skip
    teacher = {(f["session_id"], round(f["pts_s"], 6)): f["p"] for f in frames}
    sessions = run_query(str(labelled_scan), "select session_id, reasons from sessions").to_pylist()
    fired = {r["session_id"] for r in sessions if any(not x.startswith("spoof_score") for x in r["reasons"] or [])}
    confident = [(sid, t) for (sid, t), p in teacher.items() if max(p, 1 - p) >= 0.6 and (p >= 0.5 or sid not in fired)]
    assert rows and len(rows) == len(confident)  # every confident frame, and only those (no live call after a signal)
    for row in rows:
        p = teacher[(row["session_id"], round(float(row["pts_s"]), 6))]
        assert float(row["target"]) == pytest.approx(p, abs=1e-4) and row["label_source"] == "teacher"
        assert row["label"] == ("spoof" if p >= 0.5 else "live")
        assert row["attack_type"] == ("unknown" if p >= 0.5 else "none")
    # again: every crop is kept as it was, per-frame targets included
    assert main([*args, *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]) == 0
    assert json.loads((data / "mine_report.json").read_text())["new_sessions"] == 0 and _crops(data) == rows
