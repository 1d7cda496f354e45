"""liveness verdicts add: analysts' verdicts, checked whole, committed append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.reports.query import run_query
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.storage import Store
from tests.helpers import add_rows


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """Three scanned sessions."""
    out = tmp_path_factory.mktemp("verdicts-out")
    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="r1", scan_date=datetime.now(UTC).date().isoformat())
    for sid in ("a", "b", "c"):
        add_rows(writer, {"session_id": sid, "source": f"/x/{sid}.mp4", "status": "ok", "run_id": "r1",
                          "scanned_at": datetime.now(UTC)}, [])  # fmt: skip
    writer.flush()
    return out


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_latest_verdict_wins_and_the_history_is_kept(output: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(output, out)
    first = _csv(tmp_path / "first.csv", "\ufeffSession_ID,Verdict,attack,note\na,spoof,Print,paper edge\nb,live,,\n")
    assert main(["verdicts", "add", str(first), "--out", str(out), "--analyst", "kim"]) == 0
    second = _csv(tmp_path / "second.csv", "session_id,verdict,analyst\na,unsure,lee\n")
    assert main(["verdicts", "add", str(second), "--out", str(out)]) == 0
    latest = run_query(str(out), "select session_id, verdict, attack, analyst from verdicts order by 1").to_pylist()
    assert latest == [
        {"session_id": "a", "verdict": "unsure", "attack": None, "analyst": "lee"},
        {"session_id": "b", "verdict": "live", "attack": None, "analyst": "kim"},
    ]
    history = run_query(str(out), "select verdict, attack, source_file, source_row from verdict_history "
                        "where session_id = 'a' order by recorded_at").to_pylist()  # fmt: skip
    assert history == [
        {"verdict": "spoof", "attack": "print", "source_file": "first.csv", "source_row": 2},
        {"verdict": "unsure", "attack": None, "source_file": "second.csv", "source_row": 2},
    ]
    assert len(Store(out).committed("verdicts")) == 2


def test_bad_rows_are_named_by_row_number_and_nothing_is_committed(output: Path, tmp_path: Path, capsys):
    bad = _csv(
        tmp_path / "bad.csv",
        "session_id,verdict,attack\na,spoof,print\nzzz,live,\nb,maybe,\nc,live,replay\na,live,\n,spoof,\n",
    )
    assert main(["verdicts", "add", str(bad), "--out", str(output)]) == 2
    err = capsys.readouterr().err
    assert "row 4: verdict 'maybe' is not one of spoof, live, unsure" in err
    assert "row 5: an attack type (replay) goes only with verdict spoof" in err
    assert "row 6: session 'a' is also on row 2" in err and "row 7: no session_id" in err
    assert "nothing was committed" in err and not Store(output).exists("verdicts")
    unknown = _csv(tmp_path / "unknown.csv", "session_id,verdict\na,live\nzzz,live\n")
    assert main(["verdicts", "add", str(unknown), "--out", str(output)]) == 2
    assert f"row 3: session 'zzz' is not in {output}" in capsys.readouterr().err
    assert not Store(output).exists("verdicts")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("session_id,label\na,live\n", "no verdict column"),
        ("session_id,verdict\n", "holds no verdict rows"),
        (b"session_id,verdict\n\xff,live\n", "is not UTF-8 text"),
        ("session_id,verdict,note\na,live,\x1b[31mred\n", "row 2: control characters"),
    ],
)
def test_unusable_files_exit_2(output: Path, tmp_path: Path, capsys, text, message):
    path = tmp_path / "v.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["verdicts", "add", str(path), "--out", str(output)]) == 2
    assert message in capsys.readouterr().err and not Store(output).exists("verdicts")


def test_an_output_without_scans_is_refused(tmp_path: Path, capsys):
    path = _csv(tmp_path / "v.csv", "session_id,verdict\na,live\n")
    assert main(["verdicts", "add", str(path), "--out", str(tmp_path / "nothing")]) == 2
    assert "holds no scan output" in capsys.readouterr().err
