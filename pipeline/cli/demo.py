"""``liveness demo``: sample sessions made on the spot, scanned with the shipped model, summarised.

The first thing a newcomer runs: it shows every kind of row the product writes (live,
print, replay, swap, occluded, no face, several faces, a phone video stored sideways,
and broken files) and where the reports are.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.cli.options import EXIT_OK, scan_config_from_args
from pipeline.reports.query import run_query
from pipeline.reports.report import write_report
from pipeline.run.execute import execute_scan, resolve_scan_scorers
from pipeline.session.aggregate import deciding_scorers

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"


def make_inputs(folder: Path) -> Path:
    """The demo's sample sessions and their manifest (made once; reused when already there)."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        log.info("reusing the sample sessions in %s", folder)
        return manifest
    from training.data.face_sources import load_face_sources
    from training.data.synth import make_demo_sessions

    log.info("making sample sessions in %s", folder)
    make_demo_sessions(folder, load_face_sources(), seed=0)
    return manifest


def run_demo(args: argparse.Namespace) -> int:
    """Make the samples, scan them, print what each session got."""
    args.overrides = []
    config = scan_config_from_args(args)
    out: Path = args.out
    manifest = make_inputs(out / "inputs")
    executed = execute_scan([str(manifest)], config, out / "reports", quiet=args.quiet)
    assert executed is not None  # not a dry run
    _, plan, _ = executed
    scorers = resolve_scan_scorers(config)
    wanted = set(plan.keys.values())
    rows = [
        r for r in run_query(str(out / "reports"), "select * from sessions").to_pylist() if r["input_key"] in wanted
    ]
    table = Table(title="demo sessions", show_header=True)
    for column in ("session", "made as", "status", "decision", "b2", "reference", "reasons / error"):
        table.add_column(column)
    for row in sorted(rows, key=lambda r: r["session_id"]):
        extra = dict(row["extra"] or [])
        made_as = extra.get("kind", "") + (
            f" ({extra['attack_type']})" if extra.get("attack_type") not in (None, "", "none") else ""
        )
        b2, reference = ("" if row[k] is None else f"{row[k]:.3f}" for k in ("b2_score", "reference_score"))
        error = (
            row["error"] and row["error"].split(":")[0]
        )  # the reason's headline; the full text is in the report and the data
        table.add_row(
            row["session_id"],
            made_as,
            row["status"],
            row["decision"] or "",
            b2,
            reference,
            error or ", ".join(row["reasons"] or []),
        )
    console = Console(markup=False, highlight=False)  # ids and errors are printed as they are
    console.print(table)
    deciders = deciding_scorers(scorers, config.decision.scorers)
    for entry in scorers:
        if entry.name in deciders:
            role = f"decides sessions at its {entry.describe_point(config.aggregate.review_band)} (threshold +- band)"
        elif entry.measured_on_real_data:
            role = "measured on real faces, shown, not named in decision.scorers"
        else:
            role = "synthetic data only, shown, does not decide"
        console.print(f"scorer {entry.name}: {entry.card.version} ({role})")
    runs = {r["run_id"] for r in rows}
    links = [
        link
        for link in run_query(str(out / "reports"), "select * from links order by kind, session_a").to_pylist()
        if link["run_id"] in runs
    ]
    for link in links:  # the demo reuses faces: sessions of one person are linked (a fact, not a verdict)
        console.print(
            f"link {link['kind']}: {link['session_a']} and {link['session_b']} (distance {link['distance']:.2f})"
        )
    report = write_report(str(out / "reports"))
    console.print(
        f"sample videos: {out / 'inputs'}\nreports: {out / 'reports'}\nHTML report: {report}  (open it in a browser)"
    )
    console.print(
        f'try: uv run liveness query "select session_id, decision, reasons from sessions" --out {out / "reports"}'
    )
    return EXIT_OK
