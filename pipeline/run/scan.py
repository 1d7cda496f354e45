"""The scan: sessions in, Parquet rows out, with decoding, detection and scoring overlapped on Ray.

Read top to bottom, :func:`run_scan` does this: analyses (decode and the per-frame path)
run as Ray tasks, one per session, a bounded number ahead of scoring, so memory stays flat
however many sessions there are (:class:`_Analyses`); their crops are pooled across
sessions into batches (:class:`~pipeline.run.batcher.CropBatcher`) for scoring actors that
load the model once (:class:`_Scorers`); a session is assembled into its rows when all its
crops are scored (:class:`_Sessions`), and committed in chunks
(:class:`~pipeline.run.output.RunWriter`).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.config import ScanConfig
from pipeline.errors import OutputFull, ScanInterrupted
from pipeline.links.archive import Linker, mark_matched
from pipeline.run.batcher import Batch, CropBatcher
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.run.progress import Progress
from pipeline.run.ray_env import analyse_in_worker, ensure_ray, worker_storage
from pipeline.run.summary import ScanSummary
from pipeline.schema import new_run_id
from pipeline.scoring.model import ModelCard
from pipeline.scoring.registry import ScorerEntry, ScoringActor, crop_specs
from pipeline.scoring.scorers import spoof_onnx
from pipeline.session.aggregate import deciding_scorers, refinement_crops, spread_scores, worth_refining
from pipeline.session.analyse import SessionAnalysis
from pipeline.session.assemble import RunContext, assemble_session
from pipeline.session.frame_path import identity_card
from pipeline.signals.card import read_signal_card
from pipeline.signals.occlusion import DEFAULT_OCCLUSION_DIR, occlusion_onnx
from pipeline.storage import Store
from pipeline.video.sources import Session

log = logging.getLogger(__name__)

Scores = dict[str, np.ndarray]  # a session's spoof probabilities by scorer
ACTOR_QUEUE_DEPTH = 2  # batches queued per actor, so it never waits for the driver


def no_space(exc: OSError) -> bool:
    """Whether ``exc`` says the disk or the quota is full (pyarrow gives the errno in its message)."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


class StopRequest:
    """A signal handler that records the first SIGINT or SIGTERM; the scan loop checks it
    every turn (at least once a second) and stops there."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        """Raise :class:`ScanInterrupted` when a signal came."""
        if self.signum is not None:
            raise ScanInterrupted(self.signum)


def export_models_once(config: ScanConfig, b2: ScorerEntry) -> None:
    """Make the ONNX exports the workers load (the spoof model's and the occlusion model's),
    here and once per model: workers then never import torch, and several of them starting
    at once do not all export the same model."""
    if config.scoring.backend != "torch":
        assert isinstance(b2.card, ModelCard)
        spoof_onnx(b2.path, b2.card, config.scoring.onnx_cache)
    if config.signals.enabled and config.signals.occlusion.enabled:
        occlusion_onnx(config.signals.occlusion.model or DEFAULT_OCCLUSION_DIR, config.scoring.onnx_cache)


class _Analyses:
    """Analysis tasks in flight: as many as there are CPUs free for them, so each starts at
    once and its timeout counts its own running time, not time spent queued behind another."""

    def __init__(
        self, sessions: Sequence[Session], config: ScanConfig, scorers: Sequence[ScorerEntry], slots: int
    ) -> None:
        import ray

        self._storage = worker_storage(config)  # workers read s3:// inputs with the driver's storage settings
        # Ray's stubs type remote functions by positional parameters only, while the analysis
        # has keyword-only ones.
        self._remote: Any = ray.remote(num_cpus=1, max_retries=config.ray.session_retries)(analyse_in_worker)
        self._config, self._slots = config, slots
        self._crops = crop_specs(scorers)  # the first (the b2's) is the main crop
        self.todo = list(reversed(sessions))  # popped from the end: first session first
        self.running: dict[Any, tuple[Session, float]] = {}  # ref -> (session, started)

    def submit(self, in_flight: int, max_in_flight: int) -> None:
        """Start analyses while a slot is free and fewer than ``max_in_flight`` sessions are
        analysing or awaiting scores (``in_flight`` of them await scores)."""
        c = self._config
        while self.todo and len(self.running) < self._slots and len(self.running) + in_flight < max_in_flight:
            session = self.todo.pop()
            ref = self._remote.remote(
                self._storage, session, c.decode, c.detect, c.signals, crop=self._crops[0], extra_crops=self._crops[1:],
                identity=c.identity, fingerprint_hz=c.links.hash_hz, scoring=c.scoring,
                cache_dir=c.scoring.onnx_cache,
            )  # fmt: skip
            self.running[ref] = (session, time.monotonic())

    def take(self, ref: Any) -> SessionAnalysis:
        """The finished analysis behind ``ref``; a failed one when its worker died for good."""
        import ray

        session, _ = self.running.pop(ref)
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            return SessionAnalysis.failed(session, f"worker failed while analysing: {type(exc).__name__}")

    def expired(self) -> list[SessionAnalysis]:
        """Cancel the analyses past ``decode.timeout_s``; each becomes a failed analysis."""
        import ray

        timeout = self._config.decode.timeout_s
        late = [ref for ref, (_, started) in self.running.items() if time.monotonic() - started > timeout]
        failed = []
        for ref in late:
            session, _ = self.running.pop(ref)
            ray.cancel(ref, force=True)
            failed.append(SessionAnalysis.failed(session, f"timed out after {timeout:g} s"))
        return failed


class _Scorers:
    """The scoring actors and the batches each has in flight (at most ``ACTOR_QUEUE_DEPTH``)."""

    def __init__(self, config: ScanConfig, scorers: Sequence[ScorerEntry], has_gpu: bool) -> None:
        import ray

        s = config.scoring
        named = [(e.name, str(e.path)) for e in scorers]
        threads = s.threads or max(1, int(s.num_cpus))
        actor = ray.remote(
            num_cpus=s.num_cpus, num_gpus=s.num_gpus if has_gpu else 0, max_restarts=2, max_task_retries=2
        )(ScoringActor)
        # untyped handles: Ray types an actor's methods (``.score.remote``) only under @ray.method
        self.actors: list[Any] = [
            actor.remote(named, s.backend, threads, s.onnx_cache, has_gpu) for _ in range(s.actors)
        ]
        self._backend_ref = self.actors[0].backend.remote()  # asked now, read at the end
        self.load = [0] * len(self.actors)
        self.running: dict[Any, tuple[int, Batch]] = {}  # ref -> (actor index, batch)

    @property
    def idle(self) -> bool:
        """True when an actor has nothing to do: the driver should not hold crops back."""
        return not self.running or min(self.load) == 0

    def feed(self, batcher: CropBatcher, *, force: bool) -> None:
        """Send batches to the least loaded actors while one has room."""
        while True:
            idx = min(range(len(self.actors)), key=self.load.__getitem__)
            if self.load[idx] >= ACTOR_QUEUE_DEPTH:
                return
            batch = batcher.next_batch(force=force)
            if batch is None:
                return
            self.running[self.actors[idx].score.remote(batch.crops)] = (idx, batch)
            self.load[idx] += 1

    def take(self, ref: Any) -> tuple[Batch, dict[str, np.ndarray] | None, str | None]:
        """``(batch, scores, None)``, or ``(batch, None, reason)`` when its actor failed for good
        (Ray restarts an actor and retries its batch twice before that)."""
        import ray

        idx, batch = self.running.pop(ref)
        self.load[idx] -= 1
        try:
            return batch, ray.get(ref), None
        except ray.exceptions.RayError as exc:
            log.warning("a scoring batch of %d crops failed for good: %s", len(batch), type(exc).__name__)
            return batch, None, f"scoring failed: {type(exc).__name__}"

    def backend(self) -> str:
        import ray

        try:
            return ray.get(self._backend_ref)
        except ray.exceptions.RayError:
            return "unavailable"

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


class _Sessions:
    """Sessions from their analysis to their commit: queued for scores, then assembled into
    rows, written, counted; a session whose scoring failed for good becomes a failed row.

    Sessions are committed in the order given (by id: :func:`run_scan` sorts them), whatever
    order they finish in: a session is linked to those committed before it, and its row
    names the links it found, so only a fixed order gives the same rows and links for any
    number of workers, any load, and a run killed and resumed (which committed a prefix of
    the same order).
    """

    def __init__(
        self,
        order: Sequence[str],
        run: RunContext,
        keys: dict[str, str],
        batcher: CropBatcher,
        writer: RunWriter,
        summary: ScanSummary,
        progress: Progress,
        started: float,
        linker: Linker | None = None,
    ) -> None:
        self.run, self.keys, self.batcher, self.writer, self.linker = run, keys, batcher, writer, linker
        self.summary, self.progress, self.started = summary, progress, started
        self.waiting: dict[str, SessionAnalysis] = {}  # analysed sessions awaiting their scores
        self.first_round: dict[str, Scores] = {}  # scheduled faces' scores of refined sessions
        self.others: dict[str, Scores] = {}  # other faces' scores, from the first round's end to the commit
        self.refine_keys = refinement_crops(run.scorers, run.config)  # what a refinement round scores
        self.position = {sid: i for i, sid in enumerate(order)}
        self.held: dict[int, tuple[SessionAnalysis, Scores | None, Scores | None]] = {}  # finished, awaiting their turn
        self.next = 0  # the position of the next session to commit

    def analysed(self, analysis: SessionAnalysis) -> None:
        """A finished analysis: its scheduled and other faces' crops go to the batcher, or it is
        committed at once (no face)."""
        if analysis.error is not None or analysis.n_crops == 0:
            self.commit(analysis, None)
            return
        self.waiting[analysis.session.session_id] = analysis
        self.batcher.add(analysis.session.session_id, analysis.frames.first_round_crops())

    @property
    def holding(self) -> int:
        """Held sessions that keep their crops in memory (a failed one keeps none). Each was
        started after the session it waits for, so that one is analysing or being scored
        and counting these against the sessions in flight never stalls the run."""
        return sum(1 for analysis, _, _ in self.held.values() if analysis.error is None)

    def _refine(self, sid: str, analysis: SessionAnalysis, scores: dict[str, np.ndarray]) -> bool:
        """Whether the session's score lies near a threshold with faces unscored: then those
        go to the batcher too (the first round's scores kept) and True."""
        frames = analysis.frames
        if sid in self.first_round or not worth_refining(frames.scheduled, scores, self.run.scorers, self.run.config):
            return False
        self.first_round[sid] = scores
        self.summary.refined += 1
        self.batcher.add(sid, frames.scorer_crops_of(scheduled=False, keys=self.refine_keys))
        return True

    def scored(self, batch: Batch, scores: dict[str, np.ndarray] | None, failure: str | None) -> None:
        """A batch's scores (or its failure for good): commit the sessions it completes (or fails)."""
        if scores is not None:
            for sid, session_scores in self.batcher.scored(batch, scores):
                analysis = self.waiting[sid]
                if sid not in self.first_round:  # the first round: the scheduled faces, then the other faces
                    session_scores, self.others[sid] = analysis.frames.split_first_round(session_scores)
                if self._refine(sid, analysis, session_scores):
                    continue
                self.waiting.pop(sid)
                first = self.first_round.pop(sid, None)
                scheduled = analysis.frames.scheduled
                spread = (
                    spread_scores(scheduled, session_scores)
                    if first is None
                    else spread_scores(scheduled, first, session_scores)
                )
                self.commit(analysis, spread, self.others.pop(sid))
            return
        lost = [sid for sid in batch.session_ids() if sid in self.batcher]
        self.batcher.drop(lost)
        for sid in lost:
            self.first_round.pop(sid, None)
            self.others.pop(sid, None)
            analysis = self.waiting.pop(sid)
            self.commit(
                SessionAnalysis.failed(analysis.session, failure or "scoring failed", video=analysis.video), None
            )

    def commit(self, analysis: SessionAnalysis, scores: Scores | None, others: Scores | None = None) -> None:
        """A finished session with its faces' scores and its other faces' (None: not scored):
        committed now if every session listed before it is, else held until they are (then it
        and the held ones after it go in order)."""
        self.held[self.position[analysis.session.session_id]] = (analysis, scores, others)
        while self.next in self.held:
            self._commit(*self.held.pop(self.next))
            self.next += 1

    def _commit(self, analysis: SessionAnalysis, scores: Scores | None, others: Scores | None) -> None:
        """Link one session to the archive, assemble its rows and hand them to the writer."""
        links = None
        if self.linker is not None and analysis.error is None:
            frames = analysis.frames
            template = (
                frames.identity.vector if frames.identity is not None and self.run.config.identity.store else None
            )
            column = self.run.config.input.applicant_column
            applicant = analysis.session.extra.get(column) if column else None
            links = self.linker.match(analysis.session.session_id, template, frames.fingerprint, applicant)
            self.summary.count_links([] if links is None else links.column("kind").to_pylist())
        key = self.keys.get(analysis.session.session_id)
        done = assemble_session(analysis, scores, self.run, key, links, others=others)
        self.writer.add(done)
        self.summary.count(done.row, self.started)
        self.summary.count_stages(analysis.frames.counts)
        self.progress.advance()


def run_scan(
    sessions: list[Session],
    config: ScanConfig,
    *,
    scorers: Sequence[ScorerEntry],
    store: Store,
    ledger: Ledger | None = None,
    keys: dict[str, str] | None = None,
    progress: bool = True,
    stop: StopRequest | None = None,
) -> ScanSummary:
    """Scan ``sessions`` with the scorers (the b2 first) and commit their rows (and ledger entries) to ``store``.

    ``keys`` maps session ids to their ledger keys (the ``input_key`` column). With ``stop``,
    a recorded signal ends the loop: what is finished is committed, then
    :class:`ScanInterrupted` is raised.
    """
    stop = stop or StopRequest()
    import ray

    now = datetime.now(UTC)
    run_id = new_run_id(now)
    card = identity_card(config.identity.model) if config.identity.enabled else None
    deciders = deciding_scorers(scorers, config.decision.scorers)
    run = RunContext(
        run_id=run_id, scanned_at=now, scorers=tuple(scorers), config=config,
        identity_version=card.version if card is not None else "",
        signal_card=read_signal_card(config.decision.signal_card),
    )  # fmt: skip
    summary = ScanSummary(
        run_id=run.run_id, out_dir=store.display(), scan_date=now.date().isoformat(), model_version=run.model_version,
        calibration=config.decision.calibration,
        operating_points={
            e.name: e.describe_point(config.aggregate.review_band) for e in scorers if e.name in deciders
        },
    )  # fmt: skip
    if not sessions:
        return summary
    # One order for any listing of the same sessions (a manifest's rows shuffled, a resumed
    # run): sessions are analysed and committed by id, and each is linked to those before it.
    sessions = sorted(sessions, key=lambda s: s.session_id)
    started = time.perf_counter()
    ensure_ray(config)
    summary.startup_s = time.perf_counter() - started
    started = time.perf_counter()
    export_models_once(config, scorers[0])
    keys = keys or {}
    writer = RunWriter(
        store, ledger, run_id=run.run_id, scan_date=summary.scan_date, sessions_per_file=config.output.sessions_per_file
    )
    summary.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    max_in_flight = config.ray.max_in_flight or 4 * cpus  # sessions analysing or awaiting scores: bounds memory
    readable = [s for s in sessions if s.problem is None]
    analyses = _Analyses(
        readable, config, scorers, slots=max(1, cpus - int(config.scoring.num_cpus * config.scoring.actors))
    )
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    batcher = CropBatcher(config.scoring.batch_for(has_gpu))
    # The first analyses go first: they take the workers Ray has already started, while the
    # actors, whose first batch comes only when an analysis ends, start processes of their own.
    analyses.submit(0, max_in_flight)
    actors = _Scorers(config, scorers, has_gpu=has_gpu)
    log.info(
        "run %s: %d sessions on %d Ray node(s), model %s, %d scoring actor(s)",
        run.run_id, len(sessions), summary.nodes, run.model_version, len(actors.actors),
    )  # fmt: skip
    linker = None
    if config.links.enabled:
        threshold = config.links.same_face_distance or (card.threshold if card is not None else 0.0)
        linker = Linker(store, config.links, threshold, run.run_id, config.input.applicant_column)
    sessions_done = _Sessions(
        [s.session_id for s in sessions], run, keys, batcher, writer, summary,
        Progress("scanning", len(sessions), progress), started, linker,
    )  # fmt: skip

    try:
        for session in sessions:  # refused at listing (a FIFO, a device): a failed row, no worker
            if session.problem is not None:
                sessions_done.commit(SessionAnalysis.failed(session, session.problem), None)
        while analyses.todo or analyses.running or actors.running or batcher.queued:
            stop.check()
            analyses.submit(batcher.pending + sessions_done.holding, max_in_flight)
            actors.feed(batcher, force=(not analyses.todo and not analyses.running) or actors.idle)
            ready, _ = ray.wait([*analyses.running, *actors.running], num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in analyses.running:
                    sessions_done.analysed(analyses.take(ref))
                else:
                    sessions_done.scored(*actors.take(ref))
            for analysis in analyses.expired():
                sessions_done.commit(analysis, None)
        writer.flush()
        if linker is not None:
            mark_matched(store, [run.run_id], by=run.run_id)
        summary.backend = actors.backend()
    except ScanInterrupted:
        writer.flush()  # the finished sessions are committed; those in flight are scanned next time
        summary.interrupted = True
        raise
    except OSError as exc:
        if not no_space(exc):
            raise
        raise OutputFull(
            f"no space left on the output ({store.display()}): {writer.sessions_committed} session(s) of this run"
            " were committed before it filled; free space and run the same command again: it scans the rest"
        ) from exc
    finally:
        sessions_done.progress.close()
        actors.close()
    summary.wall_s = time.perf_counter() - started
    summary.files = [str(p) for p in writer.files]
    return summary
