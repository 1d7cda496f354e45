"""What an operator sees after a run: its counts and throughput, printed and kept as JSON
beside the data (``OUT/_runs/<run_id>.json``)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table

from pipeline.schema import RUNS_DIR, STATUS_OK
from pipeline.session.records import SessionRow, StageCounts
from pipeline.storage import Store
from pipeline.text import printable

log = logging.getLogger(__name__)


@dataclass
class ScanSummary:
    """What a run did: counts, throughput and where its files are."""

    run_id: str
    out_dir: str
    scan_date: str
    sessions: int = 0
    skipped: int = 0
    crops: int = 0
    wall_s: float = 0.0  # from Ray being up to the last commit (actors and workers loading included)
    startup_s: float = 0.0  # starting (or joining) Ray
    first_session_s: float = 0.0  # when the first session was finished (workers and actors warm by then)
    first_session_crops: int = 0
    last_session_s: float = 0.0
    backend: str = ""
    nodes: int = 0
    model_version: str = ""
    by_status: dict[str, int] = field(default_factory=dict)
    by_decision: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    templates: int = 0  # sessions whose main face gave an identity template
    no_template: int = 0  # sessions with a face but none usable for a template (too small, turned, covered)
    links: dict[str, int] = field(default_factory=dict)  # new links by kind
    interrupted: bool = False  # stopped by SIGINT or SIGTERM: the sessions counted were committed
    stages: dict[str, int] = field(default_factory=dict)  # how often each stage ran (StageCounts, summed)
    refined: int = 0  # sessions whose score lay near a threshold: every face scored by the deciders
    calibration: str | None = None  # the calibration in force (decision.calibration), None: the cards' thresholds
    operating_points: dict[str, str] = field(default_factory=dict)  # scorer -> which threshold decided its sessions

    @property
    def sessions_per_s(self) -> float:
        return self.sessions / self.wall_s if self.wall_s else 0.0

    @property
    def crops_per_s(self) -> float:
        return self.crops / self.wall_s if self.wall_s else 0.0

    @property
    def steady_crops_per_s(self) -> float:
        """Crops/s between the first and the last finished session: the rate once warm."""
        span = self.last_session_s - self.first_session_s
        return (self.crops - self.first_session_crops) / span if span > 0 else 0.0

    def count(self, row: SessionRow, started: float) -> None:
        """Count one finished session (``started``: the run's ``perf_counter`` start)."""
        self.sessions += 1
        self.crops += row.frames_scored
        self.last_session_s = time.perf_counter() - started
        if self.sessions == 1:
            self.first_session_s, self.first_session_crops = self.last_session_s, self.crops
        self.by_status[row.status] = self.by_status.get(row.status, 0) + 1
        if row.decision is not None:
            self.by_decision[row.decision] = self.by_decision.get(row.decision, 0) + 1
        if row.identity_frames is not None and row.status == STATUS_OK:
            if row.identity_frames > 0:
                self.templates += 1
            else:
                self.no_template += 1
        if row.error is not None:
            self.failures.append({"session_id": row.session_id, "source": row.source, "error": row.error})

    def count_stages(self, counts: StageCounts) -> None:
        """Add one session's stage counts (how often detection, the mesh, occlusion, ... ran)."""
        for name, n in asdict(counts).items():
            self.stages[name] = self.stages.get(name, 0) + n

    def count_links(self, kinds: list[str]) -> None:
        """Count the new links of one session, by kind."""
        for kind in kinds:
            self.links[kind] = self.links.get(kind, 0) + 1


def summary_dict(summary: ScanSummary) -> dict:
    """The summary as JSON-ready data, throughput included."""
    return asdict(summary) | {
        "sessions_per_s": round(summary.sessions_per_s, 3),
        "crops_per_s": round(summary.crops_per_s, 2),
        "steady_crops_per_s": round(summary.steady_crops_per_s, 2),
    }


def write_summary(summary: ScanSummary, store: Store) -> str:
    """Write ``OUT/_runs/<run_id>.json`` beside the data, all or nothing; returns its path."""
    return store.write_bytes(
        f"{RUNS_DIR}/{summary.run_id}.json", (json.dumps(summary_dict(summary), indent=2, default=str) + "\n").encode()
    )


def warn_failures(summary: ScanSummary) -> None:
    """What a quiet run still says (on stderr): how many sessions failed, and where they are listed."""
    if summary.failures:
        log.warning(
            "%d of %d session(s) failed: their rows have status=failed and an error (listed in %s/%s/%s.json)",
            len(summary.failures), summary.sessions, summary.out_dir, RUNS_DIR, summary.run_id,
        )  # fmt: skip


def print_summary(summary: ScanSummary, console: Console | None = None) -> None:
    """Counts by status and decision, throughput, failures and output location."""
    # markup off: session ids, paths and errors come from users' files ("[/bold]" is a valid file name)
    console = console or Console(stderr=False, soft_wrap=True, markup=False, highlight=False)
    if summary.sessions == 0:
        console.print(
            f"nothing new to scan: {summary.skipped} sessions already scanned with this model and settings"
            " (--rescan to force); "
            f"reports in {summary.out_dir}"
        )
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
        console.print(
            f"{summary.skipped} sessions skipped: already scanned with this model and settings (--rescan to force)"
        )
    console.print(
        f"{summary.sessions} sessions, {summary.crops} crops scored in {summary.wall_s:.1f} s"
        f" (+{summary.startup_s:.1f} s starting Ray) "
        f"({summary.sessions_per_s:.2f} sessions/s, {summary.crops_per_s:.1f} crops/s)"
        f" with {summary.backend}, model {summary.model_version}"
    )
    if summary.calibration:
        console.print(f"calibration in force: {summary.calibration}")
    if summary.operating_points:
        points = ", ".join(f"{name}: {point}" for name, point in summary.operating_points.items())
        console.print(f"operating points (threshold +- review band): {points}")
    if summary.stages.get("frames"):
        s = summary.stages
        console.print(
            f"per stage: {s['frames']} frames sampled, {s['detections']} detections, {s['meshes']} face-mesh runs,"
            f" {s['occlusion']} occlusion checks, {s['embeddings']} embeddings, {s['scheduled']} faces scheduled"
            f" for scoring ({summary.refined} sessions near a threshold had every face scored)"
        )
    if summary.templates or summary.no_template:
        console.print(
            f"identity: {summary.templates} templates, {summary.no_template} sessions with no usable face for one"
        )
    if summary.links:
        linked = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.links.items()))
        console.print(f"new links to earlier sessions: {linked} (views links and clusters in `liveness query`)")
    for failure in summary.failures[:20]:
        console.print(f"  failed: {printable(failure['session_id'])}: {printable(failure['error'] or '')}")
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more failures (see the sessions dataset)")
    console.print(f"reports in {summary.out_dir}/sessions and {summary.out_dir}/frames (scan_date={summary.scan_date})")
