"""The scan: sessions in, Parquet rows out, with decoding, detection and scoring overlapped on Ray.

Decode-detect-crop runs as Ray tasks, one per session, a bounded number ahead of scoring
(memory stays flat however many sessions there are). Their crops are pooled across
sessions into batches for scoring actors that load the model once. A session's rows are
written when all its crops are scored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.aggregate import aggregate_session
from pipeline.analyse import SessionAnalysis, analyse_session
from pipeline.config import ScanConfig
from pipeline.evidence import evidence_rows
from pipeline.ledger import Ledger
from pipeline.model import ModelCard
from pipeline.occlusion import DEFAULT_OCCLUSION_DIR, occlusion_onnx
from pipeline.output import RunWriter
from pipeline.scoring import ScoringActor
from pipeline.sources import Session
from pipeline.storage import Store, storage_env

log = logging.getLogger(__name__)

ACTOR_QUEUE_DEPTH = 2  # batches queued per actor, so it never waits for the driver


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


MALLOC_ARENAS = "2"  # glibc malloc arenas per process Ray starts locally (see _malloc_arenas)
_workers_env: dict[str, str] | None = None  # the storage settings every worker of this job has, once this process started or joined Ray


def ensure_ray(config: ScanConfig) -> None:
    """Start Ray locally, or join ``ray.address``; reuse a Ray already started in this process.

    The workers get the driver's storage settings for the whole job: locally they inherit
    its environment, on a cluster they come as the job's runtime environment. A task with
    a runtime environment of its own would need freshly started workers instead of the
    ones Ray has already started (measured: the first analyses then start 1.5 s later)."""
    global _workers_env
    import ray

    if ray.is_initialized():
        return
    env = storage_env()
    if config.ray.address:
        ray.init(address=config.ray.address, runtime_env={"env_vars": env} if env else None, log_to_driver=False, logging_level=logging.WARNING)
    else:
        # address="local": never attach to a cluster that `ray start` left on this machine.
        with _malloc_arenas(MALLOC_ARENAS):
            ray.init(address="local", num_cpus=config.ray.num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    _workers_env = env


@contextlib.contextmanager
def _malloc_arenas(arenas: str) -> Iterator[None]:
    """glibc's ``MALLOC_ARENA_MAX`` for the processes Ray starts meanwhile (they inherit it),
    unless the user set it. A worker's decoder, prefetch and MediaPipe threads otherwise each
    get an arena that keeps freed frames: measured, 145 MB less summed RSS over a scan on 2
    cores, same speed."""
    if "MALLOC_ARENA_MAX" in os.environ:
        yield
        return
    os.environ["MALLOC_ARENA_MAX"] = arenas
    try:
        yield
    finally:
        del os.environ["MALLOC_ARENA_MAX"]


def _task_env() -> dict[str, str] | None:
    """The storage settings the analysis tasks must be given: none when the job's workers
    already have this process's (a Ray started elsewhere, or settings changed since, need them)."""
    env = storage_env()
    return None if env == (_workers_env or {}) else env


@dataclass
class _Pending:
    analysis: SessionAnalysis
    scores: np.ndarray
    remaining: int


class _Progress:
    """A rich progress bar on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self._last = total, 0, time.monotonic()
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("scan", total=total)

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
        elif time.monotonic() - self._last > 10 or self.done == self.total:
            self._last = time.monotonic()
            log.info("scanned %d/%d sessions", self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _failed_analysis(session: Session, reason: str) -> SessionAnalysis:
    return SessionAnalysis(session=session, error=reason, crops=np.zeros((0, 1, 1, 3), np.uint8))


def export_models_once(config: ScanConfig, checkpoint: Path) -> None:
    """Make the ONNX exports the workers load (the spoof model's and the occlusion model's),
    here and once per model version: workers then never import torch, and several of them
    starting at once do not all export the same model."""
    if config.scoring.backend != "torch":
        from pipeline.model import read_card
        from pipeline.scoring import ensure_onnx, onnx_cache_path

        ensure_onnx(checkpoint, onnx_cache_path(checkpoint, read_card(checkpoint), config.scoring.onnx_cache))
    if config.signals.enabled and config.signals.occlusion.enabled:
        occlusion_onnx(config.signals.occlusion.model or DEFAULT_OCCLUSION_DIR, config.scoring.onnx_cache)


def run_scan(
    sessions: list[Session],
    config: ScanConfig,
    *,
    checkpoint: Path,
    card: ModelCard,
    store: Store,
    ledger: Ledger | None = None,
    keys: dict[str, str] | None = None,
    progress: bool = True,
) -> ScanSummary:
    """Scan ``sessions`` with the checkpoint and commit their rows (and ledger entries) to ``store``.

    ``keys`` maps session ids to their ledger keys (the ``input_key`` column).
    """
    import ray

    now = datetime.now(timezone.utc)
    run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    summary = ScanSummary(run_id=run_id, out_dir=store.display(), scan_date=now.date().isoformat(), model_version=card.version)
    if not sessions:
        return summary
    started = time.perf_counter()
    ensure_ray(config)
    summary.startup_s = time.perf_counter() - started
    started = time.perf_counter()
    export_models_once(config, checkpoint)
    keys = keys or {}
    writer = RunWriter(store, ledger, run_id=run_id, scan_date=summary.scan_date, sessions_per_file=config.output.sessions_per_file)

    summary.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    env = _task_env()  # workers read s3:// inputs with the driver's storage settings
    analyse = ray.remote(num_cpus=1, max_retries=config.ray.session_retries, runtime_env={"env_vars": env} if env else None)(analyse_session)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    max_in_flight = config.ray.max_in_flight or 4 * cpus  # sessions analysing or awaiting scores: bounds memory
    # Only as many analyses as there are free CPUs are submitted, so each starts at once and
    # its timeout counts its own running time, not time spent queued behind a slow one.
    analysis_slots = max(1, cpus - int(config.scoring.num_cpus * config.scoring.actors))
    todo = deque(sessions)
    analysing: dict = {}  # ref -> (session, started)
    pending: dict[str, _Pending] = {}

    def submit_analyses() -> None:
        while todo and len(analysing) < analysis_slots and len(analysing) + len(pending) < max_in_flight:
            session = todo.popleft()
            ref = analyse.remote(session, config.decode, config.detect, config.signals, input_size=card.input_size, crop_scale=card.crop_scale,
                                 cache_dir=config.scoring.onnx_cache)
            analysing[ref] = (session, time.monotonic())

    # The first analyses go first: they take the workers Ray has already started, while the
    # actors, whose first batch comes only when an analysis ends, start processes of their own.
    submit_analyses()
    threads = config.scoring.threads or max(1, int(config.scoring.num_cpus))
    actor_cls = ray.remote(num_cpus=config.scoring.num_cpus, num_gpus=config.scoring.num_gpus if has_gpu else 0, max_restarts=2, max_task_retries=2)(ScoringActor)
    actors = [actor_cls.remote(str(checkpoint), config.scoring.backend, threads, config.scoring.onnx_cache, has_gpu) for _ in range(config.scoring.actors)]
    backend_ref = actors[0].backend.remote()  # asked now, read later
    log.info("run %s: %d sessions on %d Ray node(s), model %s, %d scoring actor(s)", run_id, len(sessions), summary.nodes, card.version, len(actors))
    scoring: dict = {}  # ref -> (actor index, [(session_id, start, stop)])
    actor_load = [0] * len(actors)
    queue: deque[tuple[str, int, np.ndarray]] = deque()  # (session_id, offset in its crops, crops not yet batched)
    queued = 0
    bar = _Progress(len(sessions), progress)

    def finish(analysis: SessionAnalysis, scores: np.ndarray | None) -> None:
        frames = analysis.frames
        if scores is not None:
            for i, frame_pos in enumerate(analysis.crop_frame):
                frames[frame_pos]["spoof_score"] = float(scores[i])
        sid = analysis.session.session_id
        row = aggregate_session(frames, threshold=card.threshold, config=config.aggregate, rules=config.decision, signals=analysis.signals, error=analysis.error) | {
            "session_id": sid,
            "source": analysis.session.uri,
            "duration_s": analysis.duration_s,
            "width": analysis.width,
            "height": analysis.height,
            "rotation": analysis.rotation,
            "frames_decoded": analysis.frames_decoded,
            "model_version": card.version,
            "threshold": card.threshold,
            "run_id": run_id,
            "scanned_at": now,
            "extra": analysis.session.extra or None,
            "input_key": keys.get(sid),
        }
        run_columns = {"model_version": card.version, "run_id": run_id}
        frame_rows = [f | {"session_id": sid} | run_columns for f in frames]
        evidence = evidence_rows(row, frames, analysis.crop_frame, analysis.crops, scores, config.evidence) if scores is not None else []
        writer.add(row, frame_rows, [e | run_columns for e in evidence])
        summary.sessions += 1
        summary.crops += row["frames_scored"]
        summary.last_session_s = time.perf_counter() - started
        if summary.sessions == 1:
            summary.first_session_s, summary.first_session_crops = summary.last_session_s, summary.crops
        summary.by_status[row["status"]] = summary.by_status.get(row["status"], 0) + 1
        if row["decision"] is not None:
            summary.by_decision[row["decision"]] = summary.by_decision.get(row["decision"], 0) + 1
        if analysis.error is not None:
            summary.failures.append({"session_id": sid, "source": analysis.session.uri, "error": analysis.error})
        bar.advance()

    def submit_batches(force: bool) -> None:
        nonlocal queued
        while queued and (queued >= config.scoring.batch_size or force):
            idx = min(range(len(actors)), key=actor_load.__getitem__)
            if actor_load[idx] >= ACTOR_QUEUE_DEPTH:
                return
            parts, segments, size = [], [], 0
            while queue and size < config.scoring.batch_size:
                sid, start, crops = queue.popleft()
                take = min(len(crops), config.scoring.batch_size - size)
                segments.append((sid, start, start + take))
                parts.append(crops[:take])
                if take < len(crops):
                    queue.appendleft((sid, start + take, crops[take:]))
                size += take
            queued -= size
            ref = actors[idx].score.remote(np.concatenate(parts))
            scoring[ref] = (idx, segments)
            actor_load[idx] += 1

    try:
        while todo or analysing or scoring or queued:
            submit_analyses()
            scorer_idle = not scoring or min(actor_load) == 0
            submit_batches(force=(not todo and not analysing) or scorer_idle)
            ready, _ = ray.wait(list(analysing) + list(scoring), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in analysing:
                    session, _ = analysing.pop(ref)
                    try:
                        analysis = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        analysis = _failed_analysis(session, f"worker failed while analysing: {type(exc).__name__}")
                    if analysis.error is not None or analysis.n_crops == 0:
                        finish(analysis, None)
                    else:
                        pending[session.session_id] = _Pending(analysis, np.full(analysis.n_crops, np.nan, np.float32), analysis.n_crops)
                        queue.append((session.session_id, 0, analysis.crops))
                        queued += analysis.n_crops
                else:
                    idx, segments = scoring.pop(ref)
                    actor_load[idx] -= 1
                    scores = ray.get(ref)
                    offset = 0
                    for sid, start, stop in segments:
                        state = pending[sid]
                        state.scores[start:stop] = scores[offset : offset + stop - start]
                        offset += stop - start
                        state.remaining -= stop - start
                        if state.remaining == 0:
                            del pending[sid]
                            finish(state.analysis, state.scores)
            expired = [ref for ref, (_, t) in analysing.items() if time.monotonic() - t > config.decode.timeout_s]
            for ref in expired:
                session, _ = analysing.pop(ref)
                ray.cancel(ref, force=True)
                finish(_failed_analysis(session, f"timed out after {config.decode.timeout_s:g} s"), None)
        writer.flush()
        summary.backend = ray.get(backend_ref)
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
    summary.wall_s = time.perf_counter() - started
    summary.files = [str(p) for p in writer.files]
    return summary
