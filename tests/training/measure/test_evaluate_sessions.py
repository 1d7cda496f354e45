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


@pytest.fixture(scope="module")
def scanned(labelled_scan: Path) -> Path:
    return labelled_scan


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
    assert "needs --out OUT" in capsys.readouterr().err
    labels.write_text("session_id,label\nlive0,live\n")
    shipped = ["evaluate", "--sessions", str(labels), "--scan", str(scanned), "--record", f"b2={DEFAULT_MODEL_DIR}"]
    assert main([*shipped, "--out", str(tmp_path / "eval")]) == 2
    assert "refusing to rewrite a shipped card" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()  # refused before any work


def test_a_model_is_measured_against_the_analysts_verdicts_on_the_rows_it_scanned(
    scanned: Path, tmp_path: Path, capsys
):
    """`evaluate --sessions verdicts --out SCAN --model M`: the labels are the output's own
    verdicts, the rows those M scanned; the figures go into M's card and beside the scan."""
    out = tmp_path / "out"
    shutil.copytree(scanned, out)
    mine = tmp_path / "mine"
    shutil.copytree(DEFAULT_MODEL_DIR, mine)
    one_class = tmp_path / "one.csv"
    one_class.write_text("session_id,verdict\nlive0,live\nlive1,live\n")
    assert main(["verdicts", "add", str(one_class), "--out", str(out)]) == 0
    capsys.readouterr()
    args = ["evaluate", "--sessions", "verdicts", "--out", str(out), "--model", str(mine)]
    assert main(args) == 2
    assert "hold 2 live session(s) and no spoof one" in capsys.readouterr().err
    assert not (out / "evaluations").exists()
    both = tmp_path / "both.csv"
    both.write_text("session_id,verdict,attack\nprint0,spoof,print\nlive2,live,\n")
    assert main(["verdicts", "add", str(both), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["live"], report["spoof"]) == (3, 1) and report["recorded"] == str(mine / "model.json")
    assert Path(report["written"]).parent == out / "evaluations"
    [entry] = resolve_scorers({"b2": mine})
    assert "by the analysts' verdicts" in entry.card.real_evaluation.data
    assert entry.card.version in entry.card.real_evaluation.data
    other = tmp_path / "other"
    shutil.copytree(DEFAULT_MODEL_DIR, other)
    card = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps(card | {"version": "b2-never-scanned"}))
    assert main(["evaluate", "--sessions", "verdicts", "--out", str(out), "--model", str(other)]) == 2
    assert "scanned with b2-never-scanned" in capsys.readouterr().err
