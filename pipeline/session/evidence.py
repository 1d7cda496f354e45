"""Which face thumbnails a session keeps as evidence, and their JPEG bytes.

The report shows an analyst the frames behind a decision: the highest spoof scores, and
the face frames either side of a swap. They are the scoring crops (scale 1.6 around the
face), so the thumbnails show what the model saw. Faces are biometric data: evidence is
kept only for flagged sessions by default and can be switched off (``evidence``
section of configs/scan.yaml).
"""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from pipeline.config import EvidenceConfig
from pipeline.schema import (
    DECISION_LIVE,
    EVIDENCE_AFTER_SWAP,
    EVIDENCE_BEFORE_SWAP,
    EVIDENCE_OTHER_FACE,
    EVIDENCE_SCHEMA,
    EVIDENCE_TOP_SPOOF,
)
from pipeline.session.aggregate import REASON_OTHER_FACE
from pipeline.session.records import FrameRecords, SessionRow


def encode_jpeg(rgb: np.ndarray, size: int, quality: int) -> bytes:
    """An RGB uint8 image as JPEG bytes, resized to ``size`` x ``size``."""
    if rgb.shape[0] != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def select_evidence(
    times: list[float], scores: np.ndarray, *, swap_at_s: float | None, top_spoof: int
) -> list[tuple[int, str]]:
    """``(crop index, kind)`` of the crops to keep: the ``top_spoof`` highest scores (of the
    scored crops; NaN: not scored), and the last crop before and the first at or after
    ``swap_at_s``. ``times[i]`` is crop i's time."""
    chosen: dict[int, str] = {}
    if swap_at_s is not None and times:
        before = [i for i, t in enumerate(times) if t < swap_at_s]
        after = [i for i, t in enumerate(times) if t >= swap_at_s]
        if before:
            chosen[before[-1]] = EVIDENCE_BEFORE_SWAP
        if after:
            chosen[after[0]] = EVIDENCE_AFTER_SWAP
    values = np.asarray(scores, dtype=np.float64)
    scored = np.flatnonzero(~np.isnan(values))
    for i in scored[np.argsort(-values[scored], kind="stable")][:top_spoof]:
        chosen.setdefault(int(i), EVIDENCE_TOP_SPOOF)
    return sorted(chosen.items())


def evidence_table(
    row: SessionRow,
    frames: FrameRecords,
    crops: np.ndarray,
    config: EvidenceConfig,
    other_face: tuple[int, float, np.ndarray] | None = None,
) -> pa.Table | None:
    """The ``evidence`` rows of one finished session (its crops and scored frames), or None
    when none are wanted (switched off, no face, or a session not flagged). ``other_face``
    (frame record, score, crop) is the face beside the main one that scored highest: kept
    when it fired the ``other_face`` reason."""
    if not config.enabled or len(crops) == 0 or (config.flagged_only and row.decision in (DECISION_LIVE, None)):
        return None
    face = np.flatnonzero(frames.has_face)
    times = frames.pts_s[face].tolist()
    scores = frames.spoof_score[face]
    picked = select_evidence(times, scores, swap_at_s=row.swap_at_s, top_spoof=config.top_spoof)
    kept = [(int(face[i]), kind, float(scores[i]), crops[i]) for i, kind in picked]
    if other_face is not None and REASON_OTHER_FACE in row.reasons:
        at, score, crop = other_face
        kept.append((at, EVIDENCE_OTHER_FACE, score, crop))
    columns = {
        "session_id": [row.session_id] * len(kept),
        "frame_index": [int(frames.frame_index[at]) for at, *_ in kept],
        "pts_s": [float(frames.pts_s[at]) for at, *_ in kept],
        "kind": [kind for _, kind, _, _ in kept],
        "spoof_score": [score for _, _, score, _ in kept],
        "jpeg": [encode_jpeg(crop, config.size, config.jpeg_quality) for *_, crop in kept],
        "model_version": [row.model_version] * len(kept),
        "run_id": [row.run_id] * len(kept),
    }
    return pa.Table.from_pydict(columns, schema=EVIDENCE_SCHEMA)
