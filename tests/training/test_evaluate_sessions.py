"""``liveness evaluate --sessions``: every scorer per session against labels, and recording a
user's own real-data measurement into their card so their model may decide."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.scoring.model import DEFAULT_MODEL_DIR
from pipeline.scoring.registry import resolve_scorers
from tests.videos import write_face_video, write_rendered_session


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, ray_session, shipped_model, face_sources) -> Path:
    inputs = tmp_path_factory.mktemp("labelled")
    for i in range(3):
        write_face_video(inputs / f"live{i}.mp4", n=8)
    write_rendered_session(inputs / "print0.mp4", face_sources, kind="print", seconds=1.5)
    out = inputs.parent / "labelled-out"
    assert main(["scan", str(inputs), "--out", str(out), "--quiet"]) == 0
    return out


def test_every_scorer_is_measured_per_session_and_one_can_be_recorded(scanned: Path, tmp_path: Path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("session_id,label,attack\nlive0,live,\nlive1,live,\nlive2,live,\nprint0,spoof,print\n")
    mine = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "mine")
    args = ["evaluate", "--sessions", str(labels), "--scan", str(scanned), "--out", str(tmp_path / "eval")]
    assert main([*args, "--record", f"b2={mine}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["sessions"], report["live"], report["spoof"]) == (4, 3, 1)
    assert set(report["scorers"]) == {"b2", "reference"}
    for figures in report["scorers"].values():
        assert {"roc_auc", "bpcer", "apcer", "apcer_per_attack", "eer", "threshold"} <= set(figures)
        assert figures["apcer_per_attack"].keys() == {"print"}
    assert json.loads((tmp_path / "eval" / "evaluation_sessions.json").read_text())["scorers"] == report["scorers"]
    [entry] = resolve_scorers({"b2": mine})
    assert entry.measured_on_real_data and "3 live and 1 attack sessions" in entry.card.real_evaluation.data
    assert entry.card.real_evaluation.metrics["threshold"] == report["scorers"]["b2"]["threshold"]


def test_bad_session_labels_are_refused_with_a_reason(scanned: Path, tmp_path: Path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("session_id,label\nlive0,live\nnobody,spoof\n")
    assert main(["evaluate", "--sessions", str(labels), "--scan", str(scanned)]) == 2
    err = capsys.readouterr().err
    assert "1 labelled session(s) are not in" in err and "nobody" in err
    assert main(["evaluate", "--sessions", str(labels)]) == 2
    assert "needs --scan" in capsys.readouterr().err
    labels.write_text("session_id,label\nlive0,live\n")
    shipped = ["evaluate", "--sessions", str(labels), "--scan", str(scanned), "--record", f"b2={DEFAULT_MODEL_DIR}"]
    assert main([*shipped, "--out", str(tmp_path / "eval")]) == 2
    assert "refusing to rewrite a shipped card" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()  # refused before any work
