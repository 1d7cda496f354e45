"""The typed records one session produces: its frame columns, its signal verdicts, its row.

- :class:`FrameRecords`: every sampled frame's columns as parallel arrays (in the spirit of
  supervision's ``Detections``), validated at construction; NaN stands for null.
- :class:`~pipeline.signals.collector.SessionVerdicts` (defined with the signals that make
  it): what the session signals concluded (blinks, swap, static, occlusion).
- :class:`SessionAggregate`: what the frames add up to (status, counts, scores, decision).
- :class:`SessionRow`: one row of the ``sessions`` dataset; its fields are the schema's
  columns, in the schema's order (a test holds them equal).

A missing value is a typed default here, never a dict key that silently becomes null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.schema import CONTRACT_SCORERS, FRAME_SCHEMA, REGIONS

_FLOAT_COLUMNS = ("face_score", "spoof_score", "similarity_prev", "ear_left", "ear_right")


def _nan(n: int, *shape: int) -> np.ndarray:
    return np.full((n, *shape), np.nan, np.float32)


@dataclass(frozen=True)
class FrameRecords:
    """The frame columns of one session: one entry per sampled frame, NaN where null.

    ``bbox`` is the main face's ``(x, y, w, h)`` in pixels of the upright frame and
    ``occlusion`` one probability per region of :data:`~pipeline.schema.REGIONS`; the frames
    with a main face (:attr:`has_face`) are the ones with a crop, in order.

    >>> records = FrameRecords.empty(2)
    >>> len(records), records.has_face.tolist()
    (2, [False, False])
    """

    frame_index: np.ndarray  # int32 (N,)
    pts_s: np.ndarray  # float64 (N,), seconds from the first decoded frame
    n_faces: np.ndarray  # int32 (N,)
    face_score: np.ndarray  # float32 (N,)
    bbox: np.ndarray  # float32 (N, 4)
    spoof_score: np.ndarray  # float32 (N,)
    similarity_prev: np.ndarray  # float32 (N,)
    ear_left: np.ndarray  # float32 (N,)
    ear_right: np.ndarray  # float32 (N,)
    occlusion: np.ndarray  # float32 (N, len(REGIONS))
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # scorer name -> float32 (N,)

    def __post_init__(self) -> None:
        n = len(self.frame_index)
        for name, values in self.scores.items():
            if not isinstance(values, np.ndarray) or values.shape != (n,):
                raise ValueError(f"FrameRecords.scores[{name!r}] must be an array of shape {(n,)}")
        shapes = {
            f.name: (n, 4) if f.name == "bbox" else (n, len(REGIONS)) if f.name == "occlusion" else (n,)
            for f in fields(self)
            if f.name != "scores"
        }
        for name, shape in shapes.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape:
                got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise ValueError(f"FrameRecords.{name} must be an array of shape {shape}, got {got}")

    def __len__(self) -> int:
        return len(self.frame_index)

    @classmethod
    def empty(cls, n: int = 0) -> FrameRecords:
        """``n`` frames without a face, signal or score."""
        return cls(
            frame_index=np.arange(n, dtype=np.int32),
            pts_s=np.zeros(n, np.float64),
            n_faces=np.zeros(n, np.int32),
            face_score=_nan(n),
            bbox=_nan(n, 4),
            spoof_score=_nan(n),
            similarity_prev=_nan(n),
            ear_left=_nan(n),
            ear_right=_nan(n),
            occlusion=_nan(n, len(REGIONS)),
        )

    @property
    def has_face(self) -> np.ndarray:
        """Which frames have a main face (and so a crop), as a boolean mask."""
        return ~np.isnan(self.bbox[:, 0])

    @property
    def face_pts_s(self) -> np.ndarray:
        """The times of the frames with a main face: crop ``i`` was taken at ``face_pts_s[i]``."""
        return self.pts_s[self.has_face]

    def with_scores(self, scores: np.ndarray, by_scorer: Mapping[str, np.ndarray] | None = None) -> FrameRecords:
        """A copy whose ``spoof_score`` holds ``scores[i]`` on the i-th frame with a face (the
        score the decision rests on; NaN where none decides), and ``scores`` every scorer's."""
        every = {name: self._on_faces(values) for name, values in (by_scorer or {}).items()}
        changed = {"spoof_score": self._on_faces(scores), "scores": every}
        return FrameRecords(**{f.name: getattr(self, f.name) for f in fields(self)} | changed)

    def _on_faces(self, values: np.ndarray) -> np.ndarray:
        mask = self.has_face
        if len(values) != int(mask.sum()):
            raise ValueError(f"{len(values)} scores for {int(mask.sum())} frames with a face")
        out = _nan(len(self))
        out[mask] = values
        return out

    def to_table(
        self, *, session_id: str, model_version: str, run_id: str, others: OtherFaces | None = None
    ) -> pa.Table:
        """The ``frames`` dataset rows of this session (NaN becomes null), with the other faces
        scored on each frame (``others``; None: the session's were not scored)."""
        n = len(self)
        other_count, other_spoof = (None, _nan(n)) if others is None else others.per_frame(n)
        columns: dict[str, Any] = {
            "session_id": pa.array([session_id] * n, pa.string()),
            "frame_index": self.frame_index,
            "pts_s": self.pts_s,
            "n_faces": self.n_faces,
            **{f"bbox_{k}": self.bbox[:, i] for i, k in enumerate("xywh")},
            **{name: getattr(self, name) for name in _FLOAT_COLUMNS},
            **{f"occlusion_{r}": self.occlusion[:, i] for i, r in enumerate(REGIONS)},
            **{f"{name}_score": self.scores.get(name, _nan(n)) for name in CONTRACT_SCORERS},
            "scores": pa.array(
                [[(k, float(v[i])) for k, v in self.scores.items() if not np.isnan(v[i])] or None for i in range(n)],
                pa.map_(pa.string(), pa.float32()),
            ),
            "model_version": pa.array([model_version] * n, pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "other_faces_scored": pa.nulls(n, pa.int32()) if other_count is None else other_count,
            "other_spoof_score": other_spoof,
        }
        # Copied (np.array), not wrapped: Arrow would share the numpy buffers, and arrays that came
        # back from a Ray worker live in its object store, which a buffered table would then keep
        # whole (crops included) until its chunk is written.
        arrays = [
            columns[f.name]
            if isinstance(columns[f.name], pa.Array)
            else pa.array(np.array(columns[f.name]), f.type, from_pandas=True)
            for f in FRAME_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA)


@dataclass(frozen=True)
class OtherFaces:
    """The faces beside the main one that were scored: the frame record each was on
    (``rows``), every scorer's spoof probability (``scores``), the score the session's
    judgement of them rests on (``spoof``: its deciding scorers' mean; NaN where none decides),
    and each scorer's score of them all (``pooled``: :func:`~pipeline.session.aggregate.pool_others`).

    >>> OtherFaces(np.array([1, 1, 3]), {}, np.array([0.2, 0.9, 0.4], np.float32), {}).per_frame(4)[1].tolist()
    [nan, 0.8999999761581421, nan, 0.4000000059604645]
    """

    rows: np.ndarray  # int (M,)
    scores: dict[str, np.ndarray]  # scorer name -> float32 (M,)
    spoof: np.ndarray  # float32 (M,)
    pooled: dict[str, float]  # scorer name -> score of the other faces (empty: none scored)

    def __len__(self) -> int:
        return len(self.rows)

    def per_frame(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``n`` frame records: how many other faces were scored on it, and the
        highest of their ``spoof`` scores (NaN: none)."""
        count = np.bincount(self.rows, minlength=n).astype(np.int32)
        top = _nan(n)
        np.fmax.at(top, self.rows, self.spoof.astype(np.float32))
        return count, top


@dataclass(frozen=True)
class SessionAggregate:
    """The session columns that come from its frames: status, counts, pooled scores, decision."""

    status: str
    error: str | None = None
    frames_sampled: int = 0
    frames_scored: int = 0
    face_ratio: float | None = None
    multi_face_ratio: float | None = None
    spoof_score: float | None = None
    spoof_score_max: float | None = None
    threshold: float | None = None
    decision: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionRow:
    """One row of the ``sessions`` dataset: the fields are the schema's columns, in order."""

    session_id: str
    source: str
    status: str
    error: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    rotation: int | None
    frames_decoded: int
    frames_sampled: int
    frames_scored: int
    face_ratio: float | None
    multi_face_ratio: float | None
    spoof_score: float | None
    spoof_score_max: float | None
    b2_score: float | None
    b2_score_max: float | None
    reference_score: float | None
    reference_score_max: float | None
    scores: dict[str, float] | None
    thresholds: dict[str, float] | None
    decision: str | None
    reasons: tuple[str, ...]
    swap_detected: bool | None
    swap_at_s: float | None
    swap_times_s: tuple[float, ...] | None
    swap_distance: float | None
    identity_frames: int | None
    static: bool | None
    blink_count: int | None
    blinks: tuple[tuple[float, float], ...] | None
    eyes_watched_s: float | None
    occluded_regions: tuple[str, ...] | None
    model_version: str
    threshold: float | None
    run_id: str
    scanned_at: datetime
    input_key: str | None
    extra: dict[str, str] | None = field(default=None)
    container: str | None = None
    encoder: str | None = None
    creation_time: str | None = None
    device: str | None = None
    handler: str | None = None
    frame_interval_cv: float | None = None
    repeated_frame_ratio: float | None = None
    examined_until_s: float | None = None
    coverage: float | None = None
    decode_end: str | None = None
    bad_packets: int | None = None
    timestamp_resets: int | None = None
    size_changes: int | None = None
    decoded_until_s: float | None = None
    other_faces_scored: int | None = None
    other_spoof_score: float | None = None
    other_scores: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as column values, ready for :func:`pipeline.schema.to_table`."""
        row = asdict(self)
        row["reasons"] = list(self.reasons)
        row["occluded_regions"] = None if self.occluded_regions is None else list(self.occluded_regions)
        row["swap_times_s"] = None if self.swap_times_s is None else list(self.swap_times_s)
        row["blinks"] = None if self.blinks is None else [{"start_s": s, "end_s": e} for s, e in self.blinks]
        for name in ("scores", "thresholds", "extra", "other_scores"):  # maps, as Arrow takes them
            row[name] = None if row[name] is None else list(row[name].items())
        return row


@dataclass(frozen=True)
class StageCounts:
    """How often each stage ran in one session: sampled frames, detections, face-mesh runs,
    occlusion checks, identity embeddings, faces scheduled for the scorers, other faces cut for them."""

    frames: int = 0
    detections: int = 0
    meshes: int = 0
    occlusion: int = 0
    embeddings: int = 0
    scheduled: int = 0
    others: int = 0
