"""``liveness predict``: every registered scorer on many images, one result per image.

Inputs are image files, folders (searched recursively) and CSV files with a ``path``
column (relative paths are relative to the CSV). Each image goes through the scan's face
detection and main-face rule and each scorer's own crop; crops are scored in batches, so
thousands of images run at batch speed in one process. A file that is not a readable
image gives a result with an ``error`` and the rest go on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import DetectConfig
from pipeline.errors import InputError
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.scoring.registry import ScorerEntry, Scorers, crop_specs
from pipeline.session.aggregate import decide_scores
from training.data.preprocess import IMAGE_EXTENSIONS, read_image_rgb

BATCH = 64


def image_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """The images named by ``inputs``: files, folders (recursive, image extensions) and CSV
    files with a ``path`` column; an :class:`InputError` for an input that names nothing."""
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.suffix.lower() == ".csv" and path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and "path" not in rows[0]:
                raise InputError(f"{path} has no 'path' column")
            found += [
                (path.parent / row["path"]) if not Path(row["path"]).is_absolute() else Path(row["path"])
                for row in rows
            ]
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found


@dataclass
class Prediction:
    """One image's result: its face box, every scorer's spoof probability, and the decision
    the deciding scorers make (``None`` without a face or for an unreadable file)."""

    image: str
    face_found: bool = False
    face_box: list[float] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    decision: str | None = None
    spoof_score: float | None = None
    fired: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image, "face_found": self.face_found, "decision": self.decision}
        out |= {"spoof_score": self.spoof_score, "scores": self.scores, "face_box": self.face_box}
        if self.fired is not None:
            out["fired"] = self.fired
        if self.error is not None:
            out["error"] = self.error
        return out


def predict_images(
    paths: Sequence[Path],
    entries: Sequence[ScorerEntry],
    *,
    review_band: float,
    detect: DetectConfig | None = None,
    deciders: Sequence[str] | None = None,
    batch_size: int = BATCH,
) -> Iterator[Prediction]:
    """Predictions for ``paths`` in order, scored ``batch_size`` faces at a time."""
    detect = detect or DetectConfig()
    specs = crop_specs(entries)
    scorers = Scorers(entries, gpu=False)
    pending: list[tuple[Prediction, dict[str, np.ndarray]]] = []

    def flush() -> Iterator[Prediction]:
        faces = [p for p, crops in pending if crops]
        if faces:
            batch = {spec.key: np.stack([crops[spec.key] for _, crops in pending if crops]) for spec in specs}
            scores = scorers(batch)
            for i, prediction in enumerate(faces):
                prediction.scores = {name: round(float(s[i]), 6) for name, s in scores.items()}
                verdict = decide_scores(prediction.scores, entries, review_band=review_band, deciders=deciders)
                prediction.decision, prediction.spoof_score, prediction.fired = (
                    verdict.decision,
                    verdict.spoof_score,
                    verdict.fired,
                )
        yield from (p for p, _ in pending)
        pending.clear()

    with FaceDetector.from_config(detect) as detector:
        for path in paths:
            prediction = Prediction(image=str(path))
            image = read_image_rgb(path) if path.is_file() else None
            crops: dict[str, np.ndarray] = {}
            if image is None:
                prediction.error = "not a readable image" if path.exists() else "file not found"
            else:
                detections = detector.detect(image)
                main, _ = crop_main_face(image, detections, specs[0], rule=detect.main_face)
                if main is not None:
                    box = detections.box(main)
                    prediction.face_found, prediction.face_box = True, [round(v, 1) for v in box]
                    crops = {spec.key: spec.crop(image, box) for spec in specs}
            pending.append((prediction, crops))
            if sum(1 for _, c in pending if c) >= batch_size:
                yield from flush()
        yield from flush()
