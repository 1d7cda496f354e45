"""What a run will do: which sessions to scan, which the ledger says are done, and why.

Used by ``liveness scan`` before any work (and alone by ``--dry-run``, which writes nothing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.config import ScanConfig
from pipeline.run.ledger import Ledger, input_identity, input_key, scan_fingerprint
from pipeline.scoring.registry import ScorerEntry, scorer_digest
from pipeline.session.frame_path import identity_card
from pipeline.signals.occlusion import DEFAULT_OCCLUSION_DIR, read_occlusion_card
from pipeline.video.sources import Session

SCAN_NEW = "new or changed input"
SCAN_FORCED = "--rescan"
SKIP_DONE = "already scanned with this model and settings"
SCAN_RETRY = "failed before: tried again"  # at most input.retry_failed more times


def _identity_settings(config: ScanConfig) -> dict | None:
    """What of the identity embedding changes the rows (swaps, identity_frames); not ``store``."""
    if not (config.identity.enabled and config.signals.enabled):
        return None
    return config.identity.model_dump(exclude={"store"}) | {"card": identity_card(config.identity.model).version}


def result_settings(config: ScanConfig, scorers: Sequence[ScorerEntry]) -> dict:
    """The settings that change a session's rows: a change to any of them rescans every input."""
    occlusion = config.signals.enabled and config.signals.occlusion.enabled
    return {
        "occlusion_model": read_occlusion_card(config.signals.occlusion.model or DEFAULT_OCCLUSION_DIR).version
        if occlusion
        else None,
        "decode": config.decode.model_dump(exclude={"timeout_s", "max_decoded_pixels"}),
        "detect": config.detect.model_dump(),
        "signals": config.signals.model_dump(),
        "identity": _identity_settings(config),
        "aggregate": config.aggregate.model_dump(),
        "decision": config.decision.model_dump(),
        "thresholds": {e.name: e.threshold for e in scorers},
        "review_bands": {e.name: e.band(config.aggregate.review_band) for e in scorers},
        "scorers": [e.name for e in scorers],
    }


@dataclass
class ScanPlan:
    """The sessions to scan, the ones skipped, and each session's ledger key."""

    todo: list[Session] = field(default_factory=list)
    skipped: list[Session] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""


def plan_scan(
    sessions: list[Session],
    config: ScanConfig,
    scorers: Sequence[ScorerEntry],
    ledger: Ledger,
    *,
    rescan: bool = False,
) -> ScanPlan:
    """Key every session and split them into to-scan and already-done (all to-scan with ``rescan``).

    A session whose every row so far failed is tried again by later runs, up to
    ``input.retry_failed`` times (a longer timeout or a fixed permission lets it through).

    ``limit`` applies to the sessions to scan, so a nightly ``--limit`` run makes progress.
    """
    versions = "+".join(e.card.version for e in scorers)
    digests = "+".join(scorer_digest(e) for e in scorers)
    plan = ScanPlan(fingerprint=scan_fingerprint(versions, digests, result_settings(config, scorers)))
    finished, failed = (set(), Counter()) if rescan else ledger.attempts()
    retries = config.input.retry_failed
    done = finished | {k for k, n in failed.items() if n > retries}
    shared = {uri for uri, n in Counter(s.uri for s in sessions).items() if n > 1}
    for session in sessions:
        # manifest rows sharing one file are sessions of their own: each has its own key
        name = f"{session.uri}\0{session.session_id}" if session.uri in shared else session.uri
        key = input_key(name, input_identity(session.uri, config.input.identity), plan.fingerprint)
        plan.keys[session.session_id] = key
        if key in done:
            plan.skipped.append(session)
            plan.why[session.session_id] = SKIP_DONE
        elif config.limit is None or len(plan.todo) < config.limit:
            plan.todo.append(session)
            plan.why[session.session_id] = (
                SCAN_FORCED
                if rescan
                else f"{SCAN_RETRY} (attempt {failed[key] + 1} of {retries + 1})"
                if key in failed
                else SCAN_NEW
            )
    return plan
