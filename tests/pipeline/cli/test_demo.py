"""`liveness demo`: the newcomer's first command, end to end with the shipped model."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.cli.main import main
from tests.helpers import sessions_by_id


def test_demo_scans_every_sample_and_prints_a_summary(tmp_path: Path, ray_session, shipped_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as a newcomer types it
    assert main(["demo", "--out", "demo", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "demo sessions" in printed and "reports" in printed
    report = next((tmp_path / "demo" / "reports").glob("report-*.html"))
    assert "Flagged sessions" in report.read_text() and f"{report.name}" in printed.replace("\n", "")
    rows = {sid: r["status"] for sid, r in sessions_by_id(tmp_path / "demo" / "reports").items()}
    manifest = dict(
        duckdb.sql(f"select session_id, kind from read_csv('{tmp_path}/demo/inputs/manifest.csv')").fetchall()
    )
    assert set(rows) == set(manifest)
    for sid, kind in manifest.items():
        expected = {"broken": "failed", "no_face": "no_face"}.get(kind, "ok")
        assert rows[sid] == expected, (sid, kind, rows[sid])
    check_signals_against_truth(tmp_path)


def check_signals_against_truth(tmp_path: Path) -> None:
    """Each demo session was rendered with known truth: the scan must find it."""
    rows = sessions_by_id(tmp_path / "demo" / "reports")
    manifest = duckdb.sql(f"select * from read_csv('{tmp_path}/demo/inputs/manifest.csv', all_varchar=true)")
    truth = {r[0]: dict(zip(manifest.columns, r, strict=False)) for r in manifest.fetchall()}
    for sid, t in truth.items():
        row = rows[sid]
        if t["kind"] == "swap":
            assert (
                row["swap_detected"]
                and abs(row["swap_at_s"] - float(t["swap_at_s"])) <= 0.5
                and "swap" in row["reasons"]
            )
        elif row["status"] == "ok":
            assert row["swap_detected"] is False, sid
        if t["kind"] == "occluded":
            assert "occluded:mouth" in row["reasons"] and "left_eye" not in row["occluded_regions"]
        if t["kind"] == "multi_face":
            assert row["multi_face_ratio"] >= 0.5 and "multi_face" in row["reasons"]
        # (with several faces the rendered blinks belong to one of them, not necessarily the one followed)
        if t["kind"] in ("live", "swap", "occluded") and t.get("blink_times_s"):
            assert row["blink_count"] == len(t["blink_times_s"].split(";")), sid
        if t["kind"] == "live":  # the demo reuses faces: the one of a pair that finishes second is linked
            linked = [r for r in row["reasons"] if r.startswith("linked:")]
            assert row["reasons"] == linked and row["decision"] == ("review" if linked else "live"), sid
