"""``liveness evaluate --sessions``: every scorer measured per session against analysts' labels.

Reads a labels CSV (``session_id``, ``label`` live|spoof, optional ``attack``, ``split``) and
the latest row of each of those sessions in a scan's output, then reports every scorer's
session score at its threshold (the figures of :mod:`training.measure.evaluate_images`, with
bootstrap intervals), and the failure-to-acquire rate (labelled sessions that failed or
had no face). With ``--record NAME=DIR`` the figures of scorer NAME are written into the
card at DIR as its ``real_evaluation``: that is how a model measured on a company's own
sessions earns the right to decide (name it in ``decision.scorers``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_aside
from pipeline.checkpoint import CARD_FILE, MODELS_DIR
from pipeline.errors import InputError
from pipeline.reports.diff import version_match
from pipeline.reports.query import run_query
from pipeline.scoring.model import RealEvaluation
from pipeline.scoring.registry import read_scorer_card
from training.measure.evaluate_images import LABELS, read_label_rows, scorer_metrics

REPORT_JSON = "evaluation_sessions.json"


VERDICT_LABELS = "verdicts"  # ``--sessions verdicts``: the scan's own committed verdicts are the labels


def read_session_labels(path: Path, split: str | None = None) -> dict[str, tuple[str, str]]:
    """``session_id -> (label, attack)``; bad rows are an :class:`InputError` naming the row."""
    return {row.columns["session_id"]: (row.label, row.attack) for row in read_label_rows(path, "session_id", split)}


def verdict_labels(scan: str) -> dict[str, tuple[str, str]]:
    """``session_id -> (label, attack)`` from the scan's latest verdicts (unsure ones left out)."""
    rows = run_query(scan, "select session_id, verdict, attack from verdicts where verdict <> 'unsure'").to_pylist()
    if not rows:
        raise InputError(f"{scan} holds no spoof or live verdict: add some with `liveness verdicts add`")
    return {r["session_id"]: (r["verdict"], r["attack"] or ("unknown" if r["verdict"] == "spoof" else "none"))
            for r in rows}  # fmt: skip


def latest_rows(scan: str, wanted: set[str], model_version: str | None = None) -> dict[str, dict]:
    """The latest ``sessions`` row of each wanted session (of ``model_version``, when given)."""
    where = f"where {version_match('v')}" if model_version else "where true"
    rows = run_query(
        scan,
        f"select * from sessions {where}"
        " qualify row_number() over (partition by session_id order by scanned_at desc, run_id desc) = 1",
        params={"v": model_version} if model_version else None,
    ).to_pylist()
    return {r["session_id"]: r for r in rows if r["session_id"] in wanted}


def evaluate_sessions(
    labels_csv: Path | str,
    scan: str,
    *,
    split: str | None = None,
    out: Path | None = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Measure every scorer of a scan's output per session against the labels (a CSV, or
    :data:`VERDICT_LABELS`); with ``model_version``, on the rows that model scanned."""
    labels = verdict_labels(scan) if str(labels_csv) == VERDICT_LABELS else read_session_labels(Path(labels_csv), split)
    classes = {label for label, _ in labels.values()}
    if len(classes) < 2:
        [only] = classes
        raise InputError(
            f"the labels ({labels_csv}) hold {len(labels)} {only} session(s) and no "
            f"{'spoof' if only == 'live' else 'live'} one: a measurement needs both"
        )
    found = latest_rows(scan, set(labels), model_version)
    missing = sorted(set(labels) - set(found))
    if missing:
        raise InputError(
            f"{len(missing)} labelled session(s) are not in {scan}"
            + (f" scanned with {model_version}" if model_version else "")
            + f": {', '.join(missing[:10])}"
        )
    scored = [sid for sid in labels if found[sid]["status"] == "ok" and found[sid]["scores"]]
    y = np.array([LABELS.index(labels[sid][0]) for sid in scored], np.int64)
    attacks = np.array([labels[sid][1] if labels[sid][0] == "spoof" else "none" for sid in scored], dtype=object)
    report: dict[str, Any] = {
        "labels": str(labels_csv),
        "scan": scan,
        "split": split,
        "sessions": len(labels),
        "live": sum(v[0] == "live" for v in labels.values()),
        "spoof": sum(v[0] == "spoof" for v in labels.values()),
        "failure_to_acquire": {
            "rate": round(1 - len(scored) / len(labels), 4),
            "sessions": sorted(set(labels) - set(scored))[:50],
        },
        "scorers": {},
    }
    names = sorted({name for sid in scored for name, _ in pairs(found[sid]["scores"])})
    for name in names:
        scores = np.array([dict(pairs(found[sid]["scores"])).get(name, np.nan) for sid in scored], np.float64)
        thresholds = {t for sid in scored if (t := dict(pairs(found[sid]["thresholds"])).get(name)) is not None}
        if np.isnan(scores).any() or len(thresholds) != 1:
            report["scorers"][name] = {
                "skipped": "not every labelled session has this scorer's score under one threshold"
            }
            continue
        report["scorers"][name] = scorer_metrics(scores, y, attacks, thresholds.pop())
    if out is not None:
        text = json.dumps(report, indent=2) + "\n"
        write_aside(out / REPORT_JSON, lambda tmp: tmp.write_text(text))
    return report


def pairs(value: Any) -> list[tuple[str, float]]:
    """A map column as pairs (DuckDB and Arrow give maps as dicts or as lists of pairs)."""
    if value is None:
        return []
    return list(value.items()) if isinstance(value, dict) else [tuple(p) for p in value]


def check_recordable(model_dir: Path) -> None:
    """Refuse, before any work, a card that may not take a measurement: a shipped one, or no card."""
    if Path(model_dir).resolve().is_relative_to(MODELS_DIR.resolve()):
        raise InputError(f"refusing to rewrite a shipped card ({model_dir}): copy the model first")
    read_scorer_card(model_dir)


def record_real_evaluation(model_dir: Path, evaluation: RealEvaluation) -> Path:
    """Write ``evaluation`` into the card of the scorer checkpoint in ``model_dir`` (never a
    shipped one), atomically; the card is validated again after the change."""
    return update_card(model_dir, lambda card: card | {"real_evaluation": evaluation.model_dump(mode="json")})


def update_card(model_dir: Path, update: Callable[[dict[str, Any]], dict[str, Any]]) -> Path:
    """Rewrite the card of the scorer checkpoint in ``model_dir`` (never a shipped one) as
    ``update`` makes it from the card's JSON, atomically; validated again after the change."""
    check_recordable(model_dir)
    path = Path(model_dir) / CARD_FILE
    text = json.dumps(update(json.loads(path.read_text())), indent=2) + "\n"
    write_aside(path, lambda tmp: tmp.write_text(text))
    read_scorer_card(model_dir)
    return path
