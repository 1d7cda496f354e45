"""``liveness evaluate --images``: every registered scorer measured on labelled real images.

Reads a labels CSV (``path``, ``label`` live|spoof, optional ``attack``, ``subject``,
``split``), scores every image with every scorer (the scan's face detection, each scorer's
own crop) and reports, side by side, at each scorer's own threshold: ROC-AUC, APCER per
attack type and its maximum, BPCER, ACER, EER, BPCER20 and BPCER100, each with a bootstrap
95% interval (images resampled within each class), and the failure-to-acquire rate (no
face found, or an unreadable file). Writes ``evaluation_images.json`` and a ROC/DET plot
(``roc_det_images.png``) of all scorers.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_aside
from pipeline.errors import InputError
from pipeline.scoring.registry import ScorerEntry
from training.measure.metrics import acer, apcer, bpcer, bpcer_at_apcer, eer, roc_auc, threshold_at_bpcer
from training.measure.plots import plot_roc_det_curves
from training.measure.predict import Prediction, predict_images

LABELS = ("live", "spoof")
BOOTSTRAP = 1000
REPORT_JSON = "evaluation_images.json"
REPORT_PNG = "roc_det_images.png"


@dataclass(frozen=True)
class LabelledImage:
    """One row of a labels CSV."""

    path: Path
    label: str
    attack: str
    subject: str
    split: str


@dataclass(frozen=True)
class LabelRow:
    """One checked row of a labels CSV: its label, its attack type and every column as given."""

    label: str
    attack: str
    columns: dict[str, str]


def read_label_rows(path: Path, key: str, split: str | None = None) -> list[LabelRow]:
    """The rows of a labels CSV with columns ``key`` and ``label`` (live|spoof), of ``split``
    only when given; a bad file or row is an :class:`InputError` naming the row number."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"cannot read labels {path}: {exc.strerror or exc}") from exc
    if not rows or not {key, "label"} <= set(rows[0]):
        raise InputError(f"labels {path} need the columns {key} and label (live|spoof)")
    out = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        label = (row.get("label") or "").strip().lower()
        if label not in LABELS:
            raise InputError(f"labels {path} row {number}: label must be live or spoof, got {row.get('label')!r}")
        attack = (row.get("attack") or "").strip() or ("unknown" if label == "spoof" else "none")
        if split is None or row.get("split") == split:
            out.append(LabelRow(label, attack, row))
    if not out:
        raise InputError(f"labels {path} have no row" + (f" of split {split!r}" if split else ""))
    return out


def read_labels(path: Path, split: str | None = None) -> list[LabelledImage]:
    """The images of a labels CSV (``path`` relative to the CSV unless absolute)."""
    images = []
    for row in read_label_rows(path, "path", split):
        file = Path(row.columns["path"])
        where = file if file.is_absolute() else path.parent / file
        images.append(LabelledImage(where, row.label, row.attack, row.columns.get("subject") or file.stem,
                                    row.columns.get("split") or ""))  # fmt: skip
    return images


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> list[float | None]:
    """The 95% interval of ``metric`` over :data:`BOOTSTRAP` resamples (with replacement,
    within each class so both stay present); ``[None, None]`` where it is undefined."""
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == c) for c in (0, 1)]
    values = []
    for _ in range(BOOTSTRAP):
        idx = np.concatenate([rng.choice(c, size=len(c)) for c in classes if len(c)])
        value = metric(scores[idx], labels[idx])
        if math.isfinite(value):
            values.append(value)
    if not values:
        return [None, None]
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def rates_at(threshold: float) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """BPCER and APCER at ``threshold`` as functions of ``(scores, labels)`` (what
    :func:`bootstrap_interval` takes), NaN where the class each counts is absent."""
    return {
        "bpcer": lambda s, y: bpcer(s, y, threshold) if (y == 0).any() else math.nan,
        "apcer": lambda s, y: float(np.mean(s[y == 1] < threshold)) if (y == 1).any() else math.nan,
    }


def apcer_at_bpcer(bpcer: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """A metric: the APCER at the lowest threshold whose BPCER is at most ``bpcer`` (NaN
    without both classes)."""

    def metric(scores: np.ndarray, labels: np.ndarray) -> float:
        if not ((labels == 0).any() and (labels == 1).any()):
            return math.nan
        return rates_at(threshold_at_bpcer(scores, labels, bpcer))["apcer"](scores, labels)

    return metric


def scorer_metrics(scores: np.ndarray, labels: np.ndarray, attacks: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every figure of one scorer at ``threshold``, each ``{"value", "ci95"}``."""
    two = bool(labels.min() == 0 and labels.max() == 1)
    figures = rates_at(threshold)
    if two:
        figures |= {
            "roc_auc": roc_auc,
            "eer": lambda s, y: eer(s, y)[0],
            "bpcer20": lambda s, y: bpcer_at_apcer(s, y, None, 0.05)[0],
            "bpcer100": lambda s, y: bpcer_at_apcer(s, y, None, 0.01)[0],
        }
    out: dict[str, Any] = {}
    for name, fn in figures.items():
        value = fn(scores, labels)
        out[name] = {"value": round(value, 4) if math.isfinite(value) else None,
                     "ci95": bootstrap_interval(fn, scores, labels)}  # fmt: skip
    per_type = apcer(scores, labels, attacks, threshold) if (labels == 1).any() else {}
    out["apcer_per_attack"] = {k: round(v, 4) for k, v in per_type.items()}
    out["apcer_max"] = round(max(per_type.values()), 4) if per_type else None
    out["acer"] = round(acer(scores, labels, attacks, threshold), 4) if two else None
    out["threshold"] = threshold
    return out


def evaluate_images(
    labels_csv: Path,
    entries: Sequence[ScorerEntry],
    *,
    review_band: float,
    split: str | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Measure every scorer on the images of ``labels_csv``; writes the JSON and plot to ``out``."""
    images = read_labels(labels_csv, split)
    predictions: list[Prediction] = list(predict_images([i.path for i in images], entries, review_band=review_band))
    acquired = [k for k, p in enumerate(predictions) if p.face_found]
    labels = np.array([LABELS.index(images[k].label) for k in acquired], np.int64)
    attacks = np.array([images[k].attack if images[k].label == "spoof" else "none" for k in acquired], dtype=object)
    failed = [k for k, p in enumerate(predictions) if not p.face_found]
    report: dict[str, Any] = {
        "labels": str(labels_csv),
        "split": split,
        "images": len(images),
        "live": sum(i.label == "live" for i in images),
        "spoof": sum(i.label == "spoof" for i in images),
        "subjects": len({i.subject for i in images}),
        "failure_to_acquire": {
            "rate": round(len(failed) / len(images), 4),
            "live": sum(images[k].label == "live" for k in failed),
            "spoof": sum(images[k].label == "spoof" for k in failed),
            "files": [str(images[k].path) for k in failed][:50],
        },
        "scorers": {},
    }
    curves = {}
    for entry in entries:
        scores = np.array([predictions[k].scores[entry.name] for k in acquired], np.float64)
        if len(scores) == 0:
            continue
        card = {"version": entry.card.version, "card_has_real_evaluation": entry.measured_on_real_data}
        report["scorers"][entry.name] = card | scorer_metrics(scores, labels, attacks, entry.threshold)
        curves[entry.name] = (scores, labels, entry.threshold)
    if out is not None:
        text = json.dumps(report, indent=2) + "\n"
        write_aside(out / REPORT_JSON, lambda tmp: tmp.write_text(text))
        if len(set(labels.tolist())) == 2:
            plot_roc_det_curves(curves, out / REPORT_PNG, title=f"{labels_csv.name}" + (f" ({split})" if split else ""))
    return report
