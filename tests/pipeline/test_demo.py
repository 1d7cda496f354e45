"""`liveness demo`: the newcomer's first command, end to end with the shipped model."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.cli import main


def test_demo_scans_every_sample_and_prints_a_summary(tmp_path: Path, ray_session, shipped_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as a newcomer types it
    assert main(["demo", "--out", "demo", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "demo sessions" in printed and "reports" in printed
    report = next((tmp_path / "demo" / "reports").glob("report-*.html"))
    assert "Flagged sessions" in report.read_text() and f"{report.name}" in printed.replace("\n", "")
    rows = dict(duckdb.sql(f"select session_id, status from read_parquet('{tmp_path}/demo/reports/sessions/*/*.parquet')").fetchall())
    manifest = dict(duckdb.sql(f"select session_id, kind from read_csv('{tmp_path}/demo/inputs/manifest.csv')").fetchall())
    assert set(rows) == set(manifest)
    for sid, kind in manifest.items():
        expected = {"broken": "failed", "no_face": "no_face"}.get(kind, "ok")
        assert rows[sid] == expected, (sid, kind, rows[sid])
