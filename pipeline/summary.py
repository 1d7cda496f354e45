"""What an operator sees after a run: a printed summary and the same as JSON beside the data."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from pipeline.scan import ScanSummary
from pipeline.storage import Store

RUNS_DIR = "_runs"


def summary_dict(summary: ScanSummary) -> dict:
    """The summary as JSON-ready data, throughput included."""
    return asdict(summary) | {"sessions_per_s": round(summary.sessions_per_s, 3), "crops_per_s": round(summary.crops_per_s, 2),
                              "steady_crops_per_s": round(summary.steady_crops_per_s, 2)}


def write_summary(summary: ScanSummary, store: Store) -> str:
    """Write ``OUT/_runs/<run_id>.json`` beside the data, all or nothing; returns its path."""
    return store.write_bytes(f"{RUNS_DIR}/{summary.run_id}.json", (json.dumps(summary_dict(summary), indent=2, default=str) + "\n").encode())


def print_summary(summary: ScanSummary, console: Console | None = None) -> None:
    """Counts by status and decision, throughput, failures and output location."""
    console = console or Console(stderr=False, soft_wrap=True)
    if summary.sessions == 0:
        console.print(f"nothing new to scan: {summary.skipped} sessions already scanned with this model and settings (--rescan to force); "
                      f"reports in {summary.out_dir}")
        return
    table = Table(title=f"run {summary.run_id}", show_header=True)
    table.add_column("sessions")
    table.add_column("count", justify="right")
    for status, n in sorted(summary.by_status.items()):
        table.add_row(f"status={status}", str(n))
    for decision, n in sorted(summary.by_decision.items()):
        table.add_row(f"decision={decision}", str(n))
    console.print(table)
    if summary.skipped:
        console.print(f"{summary.skipped} sessions skipped: already scanned with this model and settings (--rescan to force)")
    console.print(
        f"{summary.sessions} sessions, {summary.crops} crops scored in {summary.wall_s:.1f} s (+{summary.startup_s:.1f} s starting Ray) "
        f"({summary.sessions_per_s:.2f} sessions/s, {summary.crops_per_s:.1f} crops/s) with {summary.backend}, model {summary.model_version}"
    )
    for failure in summary.failures[:20]:
        console.print(f"  failed: {failure['session_id']}: {failure['error']}")
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more failures (see the sessions dataset)")
    console.print(f"reports in {summary.out_dir}/sessions and {summary.out_dir}/frames (scan_date={summary.scan_date})")
