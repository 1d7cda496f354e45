"""liveness diff: what a new model changes, on the sessions both versions scanned."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.storage import Store
from tests.helpers import add_rows

OLD = {"a": ("spoof", 0.9), "b": ("live", 0.1), "c": ("live", 0.2), "d": ("review", 0.5), "e": ("live", 0.05)}
NEW = {"a": ("live", 0.1), "b": ("live", 0.12), "c": ("live", 0.45), "d": ("spoof", 0.95), "f": ("live", 0.1)}


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """Five sessions scanned by b2-old, then four of them and a new one by b2-new."""
    out = tmp_path_factory.mktemp("diff-out")
    store = Store(out)
    start = datetime.now(UTC) - timedelta(hours=1)
    for k, (version, rows) in enumerate((("b2-old+ref-1", OLD), ("b2-new+ref-1", NEW))):
        run = f"r{k}"
        writer = RunWriter(store, Ledger(store), run_id=run, scan_date=start.date().isoformat())
        for sid, (decision, score) in rows.items():
            add_rows(writer, {"session_id": sid, "source": f"/x/{sid}.mp4", "status": "ok", "decision": decision,
                              "spoof_score": score, "model_version": version, "run_id": run,
                              "scanned_at": start + timedelta(minutes=10 * k)}, [])  # fmt: skip
        writer.flush()
    return out


def test_changed_sessions_and_transitions(output: Path, capsys):
    assert main(["diff", "--out", str(output), "--from", "b2-old", "--to", "b2-new", "--format", "json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert (diff["sessions_in_both"], diff["only_in_from"], diff["only_in_to"]) == (4, 1, 1)
    changed = {c["session_id"]: (c["from_decision"], c["to_decision"]) for c in diff["changed"]}
    # b moved 0.02: unchanged; c moved 0.25 with the same decision: listed
    assert changed == {"a": ("spoof", "live"), "d": ("review", "spoof"), "c": ("live", "live")}
    transitions = {(t["from_decision"], t["to_decision"]): t["sessions"] for t in diff["transitions"]}
    assert transitions == {("spoof", "live"): 1, ("review", "spoof"): 1, ("live", "live"): 2}


def test_defaults_are_the_two_latest_versions_and_csv_lists_the_changes(output: Path, tmp_path: Path, capsys):
    target = tmp_path / "diff.csv"
    assert main(["diff", "--out", str(output), "--min-change", "0.3", "--output", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert sorted(r["session_id"] for r in rows) == ["a", "d"]
    assert {r["from_version"] for r in rows} == {"b2-old+ref-1"} and {r["to_version"] for r in rows} == {"b2-new+ref-1"}


def test_the_report_shows_what_the_new_model_changed(output: Path, tmp_path: Path):
    page = tmp_path / "r.html"
    assert main(["report", "--out", str(output), "--output", str(page)]) == 0
    text = page.read_text()
    assert "What b2-new+ref-1 changed" in text and "on the 4 session(s) both scanned" in text
    assert text.count("<tr><td>a</td>") == 1


def test_unknown_or_equal_versions_exit_2(output: Path, capsys):
    assert main(["diff", "--out", str(output), "--from", "b2-gone", "--to", "b2-new"]) == 2
    assert "--from 'b2-gone': no session was scanned with it (versions: b2-new+ref-1, b2-old+ref-1)" in (
        capsys.readouterr().err
    )
    assert main(["diff", "--out", str(output), "--from", "b2-new", "--to", "b2-new"]) == 2
    assert "the same version" in capsys.readouterr().err
