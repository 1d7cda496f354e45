"""A scan as a job: everything checked before work starts, then the plan against the
ledger, the scan itself and its summary. What ``liveness scan`` and ``liveness demo`` run."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import ScanConfig
from pipeline.errors import ConfigError, InputError, LedgerBusy, ModelError, ScanInterrupted, UsageError
from pipeline.run.ledger import Ledger
from pipeline.run.plan import ScanPlan, plan_scan
from pipeline.run.ray_env import ensure_ray
from pipeline.run.summary import ScanSummary
from pipeline.scoring.model import DEFAULT_MODEL_DIR, ModelCard, read_card
from pipeline.scoring.onnx_model import OnnxEnsembleScorer, OnnxModelCard
from pipeline.scoring.registry import ScorerEntry, scan_scorers
from pipeline.signals.card import read_signal_card
from pipeline.storage import Store
from pipeline.video.sources import Session, list_sessions

if TYPE_CHECKING:
    from pipeline.run.scan import StopRequest

log = logging.getLogger("liveness")


def resolve_model(config: ScanConfig) -> tuple[Path, ModelCard]:
    """The checkpoint a scan uses, checked to be a trained model before any work starts."""
    path = Path(config.model) if config.model else DEFAULT_MODEL_DIR
    try:
        card = read_card(path)
    except ModelError as exc:
        raise UsageError(f"{exc}. Train one with `liveness train` or pass --model DIR") from exc
    if not card.trained:
        raise UsageError(
            f"the model at {path} is untrained: scan never scores with untrained weights; "
            "train one with `liveness train`"
        )
    return path, card


def resolve_scan_scorers(config: ScanConfig) -> list[ScorerEntry]:
    """The scan's scorers (the b2 first), every card checked, and the deciding ones named in
    the config registered, before any work starts."""
    resolve_model(config)
    scorers = scan_scorers(config.model, {name: s.model for name, s in config.scorers.items()})
    for entry in scorers:
        if isinstance(entry.card, OnnxModelCard):
            OnnxEnsembleScorer(entry.path)  # a corrupt ONNX file is a model error here, not in every actor
    if config.identity.enabled:
        from pipeline.faces.identity import network_path
        from pipeline.session.frame_path import identity_card

        identity_card(config.identity.model)  # a missing or bad identity card is a model error before any work
        network_path()
    read_signal_card(config.decision.signal_card)  # a missing or bad signal card is a model error before any work
    names = [e.name for e in scorers]
    for key, named in (("scorers", config.decision.scorers or []), ("thresholds", list(config.decision.thresholds))):
        unknown = [n for n in named if n not in names]
        if unknown:
            raise ConfigError(f"decision.{key} names {unknown}, which are not scorers; scorers: {', '.join(names)}")
    return [e.for_sessions(config.decision.thresholds.get(e.name)) for e in scorers]


def prepare_scan(
    inputs: list[str], config: ScanConfig, out: Path | str
) -> tuple[list[Session], list[ScorerEntry], Store]:
    """Everything checked before work starts: the models, the output directory, the inputs."""
    scorers = resolve_scan_scorers(config)
    try:
        store = Store(out)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--out {out}: {exc}") from exc
    if store.local and Path(out).is_symlink():
        raise UsageError(f"--out {out} is a symbolic link: give the directory it points to ({Path(out).resolve()})")
    if store.local and Path(store.root).exists() and not Path(store.root).is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    sessions = list_sessions(inputs, config.input.extensions)
    if not sessions:
        raise UsageError(f"no video found in {' '.join(inputs)} (extensions: {', '.join(config.input.extensions)})")
    column = config.input.applicant_column
    lacking = [s for s in sessions if column is not None and column not in s.extra]
    if lacking:
        raise InputError(
            f"input.applicant_column is {column!r}, but {len(lacking)} session(s) have no such manifest column"
            f" (the first: {lacking[0].session_id!r}, {lacking[0].uri}; its columns:"
            f" {sorted(lacking[0].extra) or 'none, it is no manifest row'})"
        )
    return sessions, scorers, store


def check_writable(store: Store) -> None:
    """A local ``--out`` that cannot be written is a usage error before any work (a probe file
    is made and removed)."""
    if not store.local:
        return
    root = Path(store.root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".liveness-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {store.display()} is not writable: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM, while the scan runs, ask it to stop (:class:`StopRequest`): the
    handler only records the signal (raising inside Ray's waits would surface as Ray's own
    error), and the scan loop stops at its next turn. Outside the main thread, nothing."""
    from pipeline.run.scan import StopRequest

    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def print_plan(plan: ScanPlan) -> None:
    """The ``--dry-run`` listing: one line per session, then the counts."""
    for session in plan.todo:
        print(f"scan\t{session.session_id}\t{session.uri}\t{plan.why[session.session_id]}")
    for session in plan.skipped:
        print(f"skip\t{session.session_id}\t{session.uri}\t{plan.why[session.session_id]}")
    print(f"{len(plan.todo)} to scan, {len(plan.skipped)} skipped (scan fingerprint {plan.fingerprint})")


def execute_scan(
    inputs: list[str], config: ScanConfig, out: Path | str, *, quiet: bool, rescan: bool = False, dry_run: bool = False
) -> tuple[ScanSummary, ScanPlan, Store] | None:
    """Plan the run against the ledger, scan what is new, write the summary; None for a dry run."""
    from pipeline.run.scan import no_space, run_scan
    from pipeline.run.summary import print_summary, warn_failures, write_summary

    sessions, scorers, store = prepare_scan(inputs, config, out)
    ledger = Ledger(store)
    if dry_run:
        print_plan(plan_scan(sessions, config, scorers, ledger, rescan=rescan))
        return None
    check_writable(store)
    try:
        ledger.lock()
    except LedgerBusy as exc:
        raise UsageError(str(exc)) from exc
    try:
        ledger.recover()
        plan = plan_scan(sessions, config, scorers, ledger, rescan=rescan)
        if plan.skipped:
            log.info(
                "%d of %d sessions already scanned with this model and settings: skipped (--rescan to force)",
                len(plan.skipped),
                len(sessions),
            )
        started = time.perf_counter()
        if plan.todo:
            ensure_ray(config)  # first: Ray installs a SIGTERM handler of its own when it starts
        startup_s = time.perf_counter() - started
        with _stop_on_signals() as stop:
            try:
                summary = run_scan(
                    plan.todo,
                    config,
                    scorers=scorers,
                    store=store,
                    ledger=ledger,
                    keys=plan.keys,
                    progress=not quiet,
                    stop=stop,
                )
            except ScanInterrupted as stop:
                _shutdown_ray()
                name = signal.Signals(stop.signum).name
                print(
                    f"liveness scan: stopped by {name}: the sessions finished before it are committed, the others"
                    f" were not scanned; run the same command again to scan them ({store.display()})",
                    file=sys.stderr,
                )
                raise
        summary.skipped = len(plan.skipped)
        summary.startup_s += startup_s
        try:
            write_summary(summary, store)
        except OSError as exc:
            if not no_space(exc):
                raise
            log.warning("no space left for the run summary in %s: the sessions are committed", store.display())
    finally:
        ledger.unlock()
    if quiet:
        warn_failures(summary)
    else:
        print_summary(summary)
    return summary, plan, store
