import io

import pyarrow as pa
from rich.console import Console

from pipeline.reports.results import write_result
from pipeline.run.summary import ScanSummary, print_summary
from tests.helpers import session_row

HOSTILE = "[/bold][red]x[/red]"  # a valid file name that is also rich markup


def test_user_strings_are_printed_as_they_are_never_as_markup(tmp_path):
    summary = ScanSummary(run_id="r", out_dir=str(tmp_path), scan_date="2026-12-02")
    row = session_row(session_id=HOSTILE, source=f"/in/{HOSTILE}.mp4", status="failed", error=f"bad {HOSTILE}")
    summary.count(row, 0.0)
    buffer = io.StringIO()
    print_summary(summary, Console(file=buffer, markup=False, width=200))
    assert f"failed: {HOSTILE}: bad {HOSTILE}" in buffer.getvalue()
    print_summary(summary)  # the default console: no MarkupError either
    out = tmp_path / "result.txt"
    write_result(pa.table({"session_id": [HOSTILE]}), "table", out)
    assert HOSTILE in out.read_text()
