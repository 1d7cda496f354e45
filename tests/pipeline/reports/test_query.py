"""liveness query: DuckDB views over the datasets, old files, output formats, bad SQL; the data dictionary."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli.main import main
from pipeline.reports.dictionary import COLUMNS, EXAMPLE_QUERIES, partitioned, render_markdown
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.schema import VIEWS
from pipeline.storage import Store
from tests.helpers import ROOT, add_rows, fill_disk, small_tmpfs


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="r1", scan_date=datetime.now(UTC).date().isoformat())
    now = datetime.now(UTC)
    for i, (decision, score, swap) in enumerate([("spoof", 0.9, True), ("live", 0.1, False), ("review", 0.5, False)]):
        add_rows(
            writer,
            {
                "session_id": f"s{i}",
                "source": f"/v/s{i}.mp4",
                "status": "ok",
                "decision": decision,
                "spoof_score": score,
                "reasons": ["swap"] if swap else [],
                "swap_detected": swap,
                "swap_at_s": 1.5 if swap else None,
                "occluded_regions": ["mouth"] if i == 2 else [],
                "run_id": "r1",
                "scanned_at": now,
                "extra": {"channel": "app"},
            },
            [
                {
                    "session_id": f"s{i}",
                    "frame_index": j,
                    "pts_s": j / 10,
                    "n_faces": 1,
                    "spoof_score": score,
                    "similarity_prev": 0.9,
                    "run_id": "r1",
                }
                for j in range(20)
            ],
        )
    add_rows(
        writer,
        {
            "session_id": "bad",
            "source": "/v/bad.mp4",
            "status": "failed",
            "error": "empty file (0 bytes)",
            "run_id": "r1",
            "scanned_at": now,
        },
        [],
    )
    writer.flush()
    # a file written by an older version: fewer columns
    old = out / "sessions" / "scan_date=2026-01-02" / "old-00000.parquet"
    old.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "session_id": ["ancient"],
                "source": ["/v/a.mp4"],
                "status": ["ok"],
                "spoof_score": [0.2],
                "run_id": ["r0"],
            }
        ),
        old,
    )
    return out


def _query(capsys, output: Path, sql: str, *flags: str) -> tuple[int, str, str]:
    code = main(["query", sql, "--out", str(output), *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_views_read_every_file_and_old_files_get_nulls(output: Path, capsys):
    code, out, _ = _query(
        capsys,
        output,
        "select session_id, swap_detected, occluded_regions, scan_date from sessions order by session_id",
        "--format",
        "json",
    )
    assert code == 0
    rows = {r["session_id"]: r for r in json.loads(out)}
    assert set(rows) == {"ancient", "bad", "s0", "s1", "s2"}
    assert rows["ancient"]["swap_detected"] is None and rows["ancient"]["scan_date"] == "2026-01-02"
    assert rows["s0"]["swap_detected"] is True and rows["s2"]["occluded_regions"] == ["mouth"]


def test_sessions_holds_each_sessions_latest_attempt_per_model_version_and_history_every_attempt(tmp_path: Path):
    """Issue 27 item 2: a failed input retried by later runs kept every attempt in `sessions`, so
    an analyst's count counted it twice. Files of an older version (no model_version) read too."""
    from datetime import timedelta

    from pipeline.reports.query import run_query

    store = Store(tmp_path)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    attempts = [("r1", "a", "failed", "v1"), ("r2", "a", "ok", "v1"), ("r2", "b", "ok", "v1"), ("r3", "a", "ok", "v2")]
    for hour, (run, sid, status, version) in enumerate(attempts):
        writer = RunWriter(store, Ledger(store), run_id=f"{run}-{sid}", scan_date="2026-12-01")
        row = {"session_id": sid, "status": status, "model_version": version, "run_id": run}
        add_rows(writer, row | {"scanned_at": start + timedelta(hours=hour), "source": f"/v/{sid}.mp4"}, [])
        writer.flush()
    old = tmp_path / "sessions" / "scan_date=2026-01-02" / "old-00000.parquet"
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"session_id": ["c", "c"], "status": ["failed", "ok"], "run_id": ["r0", "r0b"]}), old)

    rows = run_query(str(tmp_path), "select session_id, model_version, status, run_id from sessions order by all")
    assert rows.to_pylist() == [
        {"session_id": "a", "model_version": "v1", "status": "ok", "run_id": "r2"},
        {"session_id": "a", "model_version": "v2", "status": "ok", "run_id": "r3"},
        {"session_id": "b", "model_version": "v1", "status": "ok", "run_id": "r2"},
        {"session_id": "c", "model_version": None, "status": "ok", "run_id": "r0b"},  # no time: the later run id wins
    ]
    history = run_query(str(tmp_path), "select session_id, count(*) from session_history group by 1 order by 1")
    assert history.to_pylist() == [
        {"session_id": "a", "count_star()": 3}, {"session_id": "b", "count_star()": 1},
        {"session_id": "c", "count_star()": 2},
    ]  # fmt: skip


def test_csv_parquet_and_table_formats(output: Path, capsys, tmp_path: Path):
    code, out, _ = _query(
        capsys, output, "select session_id, reasons, extra from sessions where session_id = 's0'", "--format", "csv"
    )
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (
        row["session_id"] == "s0"
        and json.loads(row["reasons"]) == ["swap"]
        and json.loads(row["extra"]) == {"channel": "app"}
    )
    target = tmp_path / "frames.parquet"
    assert _query(capsys, output, "select * from frames", "--format", "parquet", "--output", str(target))[0] == 0
    assert pq.read_table(target).num_rows == 60
    text = tmp_path / "t.txt"
    assert (
        _query(
            capsys,
            output,
            "select decision, count(*) as n from sessions group by 1 order by 1",
            "--format",
            "table",
            "--output",
            str(text),
        )[0]
        == 0
    )
    assert "spoof" in text.read_text() and "row(s)" in text.read_text()


def test_a_bad_query_gets_duckdbs_message_and_exit_2(output: Path, capsys):
    code, _, err = _query(capsys, output, "select no_such_column from sessions")
    assert code == 2 and "no_such_column" in err and "query failed" in err
    code, _, err = _query(capsys, output.parent / "nowhere", "select 1")
    assert code == 2 and "no scan output" in err
    assert main(["query", "select 1", "--out", str(output), "--format", "parquet"]) == 2


def test_queries_are_read_only_unless_told(output: Path, capsys, tmp_path: Path):
    target = tmp_path / "copied.csv"
    for sql in (
        f"copy (select * from sessions) to '{target}'",  # a write anywhere on the disk
        "select * from read_csv('/etc/passwd')",  # a read outside the output
        "install spatial",  # a download
        "set enable_external_access = true",  # and no way back
    ):
        code, _, err = _query(capsys, output, sql)
        assert code == 2 and "query failed" in err, sql
    assert not target.exists()
    assert _query(capsys, output, "select count(*) from sessions")[0] == 0
    code, _, _ = _query(capsys, output, f"copy (select 1 as x) to '{target}'", "--allow-external")
    assert code == 0 and target.read_text().strip().splitlines() == ["x", "1"]


@pytest.mark.parametrize("title,sql", EXAMPLE_QUERIES, ids=[t for t, _ in EXAMPLE_QUERIES])
def test_the_dictionarys_example_queries_run(output: Path, capsys, title: str, sql: str):
    assert _query(capsys, output, sql, "--format", "json")[0] == 0


def test_every_column_is_in_the_dictionary_and_nothing_else():
    for name, schema in VIEWS.items():
        assert set(COLUMNS[name]) == set(schema.names) | ({"scan_date"} if partitioned(name) else set()), name
    assert set(COLUMNS) == set(VIEWS)


def test_the_dictionary_file_is_current(capsys):
    assert (ROOT / "DATA_DICTIONARY.md").read_text() == render_markdown()
    assert main(["query", "--out", ".", "--dictionary"]) == 0
    assert "## `sessions`" in capsys.readouterr().out


def test_query_and_report_outputs_are_whole_or_absent_on_a_full_disk(output: Path, capsys, tmp_path: Path):
    with small_tmpfs(tmp_path / "full", "1m") as full:
        kept = full / "result.csv"
        kept.write_text("old\n")
        fill_disk(full)  # not a byte left
        code, _, err = _query(capsys, output, "select * from frames", "--format", "csv", "--output", str(kept))
        assert code == 2 and "nothing was written" in err
        assert kept.read_text() == "old\n"  # the old file, not a partial new one
        assert main(["report", "--out", str(output), "--output", str(full / "report.html")]) == 2
        assert "nothing was written" in capsys.readouterr().err
        assert sorted(p.name for p in full.iterdir()) == ["filler.bin", "result.csv"]  # no 0-byte HTML, no temporaries
