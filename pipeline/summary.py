"""What an operator sees after a run: a printed summary and the same as JSON beside the data."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.scan import ScanSummary

RUNS_DIR = "_runs"


def summary_dict(summary: ScanSummary) -> dict:
    """The summary as JSON-ready data, throughput included."""
    return asdict(summary) | {"sessions_per_s": round(summary.sessions_per_s, 3), "crops_per_s": round(summary.crops_per_s, 2)}


def write_summary(summary: ScanSummary) -> Path:
    """Write ``OUT/_runs/<run_id>.json`` (aside, then renamed)."""
    path = Path(summary.out_dir) / RUNS_DIR / f"{summary.run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary_dict(summary), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_summary(summary: ScanSummary, console: Console | None = None) -> None:
    """Counts by status and decision, throughput, failures and output location."""
    console = console or Console(stderr=False, soft_wrap=True)
    table = Table(title=f"run {summary.run_id}", show_header=True)
    table.add_column("sessions")
    table.add_column("count", justify="right")
    for status, n in sorted(summary.by_status.items()):
        table.add_row(f"status={status}", str(n))
    for decision, n in sorted(summary.by_decision.items()):
        table.add_row(f"decision={decision}", str(n))
    console.print(table)
    console.print(
        f"{summary.sessions} sessions, {summary.crops} crops scored in {summary.wall_s:.1f} s "
        f"({summary.sessions_per_s:.2f} sessions/s, {summary.crops_per_s:.1f} crops/s) with {summary.backend}, model {summary.model_version}"
    )
    for failure in summary.failures[:20]:
        console.print(f"  failed: {failure['session_id']}: {failure['error']}")
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more failures (see the sessions dataset)")
    console.print(f"reports in {summary.out_dir}/sessions and {summary.out_dir}/frames (scan_date={summary.scan_date})")
