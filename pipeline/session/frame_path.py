"""The one path every sampled frame takes, in the scan and everywhere that measures or
learns from it: the benchmark, the signal and scan evaluations, the occlusion model's
training data and the tests.

Per frame: the main face's box, the scorer's crop (the model card's
:class:`~pipeline.faces.crop.CropSpec`), and with signals on, the face-mesh crop and its
tracked landmarks, then the session signals. Per session: :meth:`FramePath.new_session`,
:meth:`FramePath.step` per frame, then :meth:`FramePath.finish` gives the :class:`SessionFrames`.

Each stage runs at the rate it needs (:mod:`pipeline.session.schedule`). MediaPipe face
detection runs on the first frame, whenever the face mesh loses the face, on every frame
due for the scorers (their crops are cut from the detector's box, as the scorers were
measured on) and at least ``detect.recheck_hz`` times a second (new or extra faces); in
between, the face mesh tracks the face and its landmarks place the box, calibrated against
the detector's box at the last detection. The face mesh, the crop similarity and the eye aspect
ratio run on every sampled frame. The spoof scorers (``scoring.rate_hz``) and occlusion
(``signals.occlusion.rate_hz``) run on a schedule and densely after an event of the cheap
cues: a cut (similarity drop), a face lost and found or changed, a change in the number of
faces, eyes closing. Which faces the scorers take first is :attr:`SessionFrames.scheduled`.

The MediaPipe graphs and the occlusion model are loaded once per process and shared by
every path built in it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.checkpoint import DEFAULT_ONNX_CACHE
from pipeline.config import DetectConfig, IdentityConfig, ScoringConfig, SignalsConfig
from pipeline.faces.crop import CropSpec, square_crop_box
from pipeline.faces.detect import FOLLOW_IOU, Detections, FaceDetector, box_iou
from pipeline.faces.identity import DEFAULT_IDENTITY_DIR, FaceEmbedder, IdentityCard
from pipeline.faces.landmarks import FaceMesh
from pipeline.schema import REGIONS
from pipeline.session.records import FrameRecords, StageCounts
from pipeline.session.schedule import StageSchedule
from pipeline.signals.collector import SessionSignals, SessionVerdicts
from pipeline.signals.identity import IdentitySeries, IdentityTemplate, IdentityTrack, session_template
from pipeline.signals.occlusion import DEFAULT_OCCLUSION_DIR, MESH_CROP_SCALE, MESH_CROP_SIZE, OcclusionScorer
from pipeline.video.decode import SampledFrame
from pipeline.video.fingerprint import Fingerprint, FingerprintTrack

MESH_CROP = CropSpec(size=MESH_CROP_SIZE, scale=MESH_CROP_SCALE)  # what face mesh runs on


@lru_cache(maxsize=2)
def shared_detector(model_selection: int, min_confidence: float, pad_retry: float) -> FaceDetector:
    """The process's MediaPipe face detector for these settings."""
    return FaceDetector.from_config(
        DetectConfig(model_selection=model_selection, min_confidence=min_confidence, pad_retry=pad_retry)
    )


@lru_cache(maxsize=1)
def shared_face_mesh() -> FaceMesh:
    """The process's tracking face mesh (reset at every new session)."""
    return FaceMesh(tracking=True)


@lru_cache(maxsize=2)
def shared_occlusion(model_dir: str, cache_dir: str) -> OcclusionScorer:
    """The process's occlusion model (its ONNX export cached in ``cache_dir``)."""
    return OcclusionScorer(model_dir, cache_dir=cache_dir)


@lru_cache(maxsize=2)
def shared_embedder(model_dir: str | None = None) -> FaceEmbedder:
    """The process's face-recognition network (in the identity card's folder; None: the shipped one)."""
    return FaceEmbedder(model_dir or DEFAULT_IDENTITY_DIR)


@lru_cache(maxsize=2)
def identity_card(model_dir: str | None) -> IdentityCard:
    """The identity card of ``model_dir`` (None: the shipped one), read once per process."""
    return IdentityCard.load(model_dir or DEFAULT_IDENTITY_DIR)


def mesh_points(landmarks: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Face-mesh landmarks found in the :data:`MESH_CROP` of the face at ``box``, in frame pixels."""
    square = square_crop_box(box, MESH_CROP.scale)
    scale = square.side / MESH_CROP.size
    points = landmarks.astype(np.float32) * scale
    points[:, 0] += square.x0
    points[:, 1] += square.y0
    return points


Box = tuple[float, float, float, float]


def points_box(points: np.ndarray) -> Box:
    """The ``(x, y, w, h)`` box around face-mesh landmarks (frame pixels)."""
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


@dataclass(frozen=True)
class BoxCalibration:
    """Where the detector's box lies relative to the box around the landmarks, measured at a
    detection: centre offsets and sizes in units of the landmarks' box. A tracked frame's box
    is its landmarks' box moved by this, so its crops are cut as a detection's would be."""

    dx: float
    dy: float
    sw: float
    sh: float

    @classmethod
    def measure(cls, detected: Box, landmarks: Box) -> BoxCalibration | None:
        """The calibration of one detection (None when the landmarks' box is degenerate)."""
        x, y, w, h = landmarks
        if w < 1 or h < 1:
            return None
        dx, dy, dw, dh = detected
        return cls((dx + dw / 2 - x - w / 2) / w, (dy + dh / 2 - y - h / 2) / h, dw / w, dh / h)

    def apply(self, landmarks: Box) -> Box:
        """The detector-like box of a landmarks' box."""
        x, y, w, h = landmarks
        cx, cy, bw, bh = x + w / 2 + self.dx * w, y + h / 2 + self.dy * h, self.sw * w, self.sh * h
        return cx - bw / 2, cy - bh / 2, bw, bh


@dataclass
class StageCost:
    """CPU seconds, wall seconds and items of one stage of the path (kept when timed)."""

    name: str
    cpu_s: float = 0.0
    wall_s: float = 0.0
    items: int = 0

    def add(self, cpu_s: float, wall_s: float, items: int = 1) -> None:
        self.cpu_s += cpu_s
        self.wall_s += wall_s
        self.items += items


@dataclass(frozen=True)
class FrameStep:
    """What one frame gave: its detections, the main face (index and box), the scorer's
    crop, and the face-mesh crop and landmarks (None where there is none)."""

    detections: Detections
    main: int | None = None
    box: tuple[float, float, float, float] | None = None
    crop: np.ndarray | None = None
    mesh_crop: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    points: np.ndarray | None = None  # the landmarks in frame pixels


@dataclass(frozen=True)
class SessionFrames:
    """A session after the per-frame path: its frame records, the crops of its frames with a
    face (``crops[i]`` belongs to the i-th such frame; the path's main crop, which the signals
    and the evidence use), and the signals' verdicts. ``scorer_crops`` holds every crop the
    scorers need, by :attr:`CropSpec.key`, the main one among them. ``identity`` is the main
    face's template (biometric data; None with identity off or no usable face) and
    ``identity_series`` its embeddings; ``fingerprint`` the video's frame hashes.
    ``scheduled`` marks the faces the scorers take (K,): their schedule, and every face after
    an event; the others are scored only when the session's score lies near a threshold
    (``scoring.refine_band``). ``other_crops`` holds the crops of the faces beside the main
    one (``detect.max_others`` per frame, ``scoring.other_rate_hz`` frames a second, where
    detection ran), by crop key, and ``other_rows`` the frame record each was on; the scorers
    take them with the scheduled faces. ``counts`` says how often each stage ran."""

    records: FrameRecords
    crops: np.ndarray  # uint8 (K, S, S, 3)
    verdicts: SessionVerdicts
    scorer_crops: dict[str, np.ndarray] = field(default_factory=dict)
    identity: IdentityTemplate | None = None
    identity_series: IdentitySeries | None = None
    fingerprint: Fingerprint | None = None
    scheduled: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    counts: StageCounts = field(default_factory=StageCounts)
    other_crops: dict[str, np.ndarray] = field(default_factory=dict)
    other_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def other_face_crops(self) -> np.ndarray:
        """The other faces' crops cut as :attr:`crops` are (the main spec's): what evidence shows."""
        return next(iter(self.other_crops.values()), np.zeros((0, *self.crops.shape[1:]), np.uint8))

    def first_round_crops(self) -> dict[str, np.ndarray]:
        """What the scorers take first, by crop key: the scheduled faces' crops, then the other faces'."""
        first = self.scorer_crops_of(scheduled=True)
        if not len(self.other_rows):
            return first
        return {key: np.concatenate([crops, self.other_crops[key]]) for key, crops in first.items()}

    def split_first_round(
        self, scores: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The first round's scores by scorer (in :meth:`first_round_crops`' order) as the
        scheduled faces' and the other faces'."""
        n = int(self.scheduled.sum())
        return {name: v[:n] for name, v in scores.items()}, {name: v[n:] for name, v in scores.items()}

    def scorer_crops_of(self, scheduled: bool, keys: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """The scorers' crops, by crop key (``keys``: these only), of the scheduled faces or of
        the others (the refinement round's)."""
        mask = self.scheduled if scheduled else ~self.scheduled
        return {key: crops[mask] for key, crops in self.scorer_crops.items() if keys is None or key in keys}


@dataclass
class _Columns:
    frame_index: list[int] = field(default_factory=list)
    pts_s: list[float] = field(default_factory=list)
    n_faces: list[int] = field(default_factory=list)
    face_score: list[float] = field(default_factory=list)
    bbox: list[tuple[float, float, float, float]] = field(default_factory=list)
    similarity_prev: list[float] = field(default_factory=list)
    ear_left: list[float] = field(default_factory=list)
    ear_right: list[float] = field(default_factory=list)
    occlusion: list[np.ndarray] = field(default_factory=list)


_NO_BOX = (np.nan, np.nan, np.nan, np.nan)


class FramePath:
    """The per-frame path for one crop spec and one detection and signals config.

    >>> path = FramePath(card.crop_spec, DetectConfig(), SignalsConfig())  # doctest: +SKIP
    >>> result = path.run(video.sampled())  # doctest: +SKIP
    >>> result.records.ear_left, result.verdicts.blink_count  # doctest: +SKIP

    ``timed=True`` keeps the CPU and wall time of detection (with the crops), of the
    signals (face mesh, similarity, occlusion, verdicts) and of the identity embeddings in
    :attr:`costs`. ``identity`` (with signals on: it needs the landmarks) embeds the main
    face; ``fingerprint_hz`` hashes frames for same-recording links. ``scoring`` gives the
    scorers' schedule (None: the scan's default one; ``rate_hz=None`` schedules every face).
    """

    def __init__(
        self,
        crop: CropSpec,
        detect: DetectConfig,
        signals: SignalsConfig,
        *,
        extra_crops: Sequence[CropSpec] = (),
        identity: IdentityConfig | None = None,
        fingerprint_hz: float | None = None,
        scoring: ScoringConfig | None = None,
        cache_dir: str | Path = DEFAULT_ONNX_CACHE,
        timed: bool = False,
    ) -> None:
        self.crop_spec = crop
        self.extra_crops = tuple(spec for spec in dict.fromkeys(extra_crops) if spec != crop)
        self._specs = (crop, *self.extra_crops)  # every scorer's crop, the main one first
        self.detect = detect
        self.signals_config = signals
        self.detector = shared_detector(detect.model_selection, detect.min_confidence, detect.pad_retry)
        self.mesh = shared_face_mesh() if signals.enabled else None
        self.occlusion = None
        if signals.enabled and signals.occlusion.enabled:
            self.occlusion = shared_occlusion(str(signals.occlusion.model or DEFAULT_OCCLUSION_DIR), str(cache_dir))
        self.identity_config = identity if identity is not None and identity.enabled and signals.enabled else None
        self.embedder = shared_embedder(self.identity_config.model) if self.identity_config is not None else None
        card = identity_card(self.identity_config.model) if self.identity_config is not None else None
        self.identity_threshold = signals.swap.identity_distance or (card.threshold if card else 0.0)
        support = signals.swap.shape_support_distance or (card.same_person_distance if card else 0.0)
        self.shape_support = support
        self.fingerprint_hz = fingerprint_hz
        # without the face mesh nothing tracks the face between detections
        self._detect_schedule = StageSchedule(detect.recheck_hz if self.mesh is not None else None)
        scoring = scoring or ScoringConfig()
        self._score_schedule = StageSchedule(scoring.rate_hz, scoring.dense_s)
        self._occlusion_schedule = StageSchedule(signals.occlusion.rate_hz)
        self._other_schedule = StageSchedule(scoring.other_rate_hz)
        self.timed = timed
        self.costs = {name: StageCost(name) for name in ("detect", "signals", "identity")}
        self.new_session()

    @property
    def signals(self) -> SessionSignals | None:
        """The current session's signal series (times, EARs, similarities, face shapes), kept
        after :meth:`finish` until the next session starts; None with signals off."""
        return self._signals

    def new_session(self) -> None:
        """Start a session: forget the followed face, the tracked mesh and the signals so far."""
        self._followed: Box | None = None
        self._points: np.ndarray | None = None  # the previous frame's landmarks (frame pixels)
        self._calibration: BoxCalibration | None = None
        self._faces = (0, float("nan"))  # the last detection's faces counted (detect.min_face_share), main's score
        self._columns = _Columns()
        self._crops: list[np.ndarray] = []
        self._extra: dict[str, list[np.ndarray]] = {spec.key: [] for spec in self.extra_crops}
        self._scheduled: list[bool] = []
        self._other_crops: dict[str, list[np.ndarray]] = {spec.key: [] for spec in self._specs}
        self._other_rows: list[int] = []
        self._counts = {name: 0 for name in ("detections", "meshes")}
        schedules = (self._detect_schedule, self._score_schedule, self._occlusion_schedule, self._other_schedule)
        for schedule in schedules:
            schedule.reset()
        self._identity = (
            IdentityTrack(self.identity_config, self.embedder)
            if self.identity_config is not None and self.embedder is not None
            else None
        )
        self._fingerprint = FingerprintTrack(self.fingerprint_hz) if self.fingerprint_hz else None
        self._signals = (
            SessionSignals(
                self.signals_config, self.occlusion, self._identity, self.identity_threshold, self.shape_support
            )
            if self.mesh is not None
            else None
        )
        if self.mesh is not None:
            self.mesh.reset()

    def _tracked_box(self) -> Box | None:
        """The box the previous frame's landmarks give (None when there is nothing to track)."""
        if self._points is None or self._calibration is None:
            return None
        return self._calibration.apply(points_box(self._points))

    def _detect(self, image: np.ndarray) -> tuple[Detections, int | None, Box | None]:
        """Detection on ``image``: the faces, the main one (followed from the last box) and its box."""
        self._counts["detections"] += 1
        detections = self.detector.detect(image)
        follow = self._followed if self.detect.follow_face else None
        main = detections.main_face(self.detect.main_face, follow)
        box = None if main is None else detections.box(main)
        faces = detections.counted(main, self.detect.min_face_share)
        self._faces = (faces, float("nan") if main is None else float(detections.scores[main]))
        return detections, main, box

    def _mesh(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The face-mesh crop at ``box``, its landmarks and those in frame pixels (None: lost)."""
        assert self.mesh is not None
        self._counts["meshes"] += 1
        mesh_crop = MESH_CROP.crop(image, box)
        landmarks = self.mesh.landmarks(mesh_crop)
        return mesh_crop, landmarks, None if landmarks is None else mesh_points(landmarks, box)

    def _locate(self, t: float, image: np.ndarray, clock: _Clock) -> tuple[_Located, bool]:
        """The main face of the frame at ``t``: detected (first frame, lost track, due for the
        scorers or the re-check) or tracked by the face mesh; and whether detection saw an
        event (the face gone or another one, the number of faces changed, the track lost)."""
        tracked = self._tracked_box()
        event = False
        found = _Located(box=tracked)
        # a face to be scored is cut from the detector's box, as the scorers were measured on
        if tracked is None or self._detect_schedule.due(t) or self._score_schedule.due(t):
            before = self._faces[0]
            found = _Located(*self._detect(image))
            changed = tracked is not None and (found.box is None or _iou(found.box, tracked) < FOLLOW_IOU)
            event = changed or (tracked is not None and self._faces[0] != before)
            self._detect_schedule.ran(t)
        clock.charge(self.costs["detect"], items=int(found.detections is not None))
        if self.mesh is None or found.box is None:
            return found, event
        found.mesh(*self._mesh(image, found.box))
        clock.charge(self.costs["signals"], items=0)
        if found.landmarks is None and found.detections is None:  # the mesh lost the face: look for it afresh
            found = _Located(*self._detect(image))
            self._detect_schedule.ran(t)
            event = True
            clock.charge(self.costs["detect"])
            if found.box is not None:
                found.mesh(*self._mesh(image, found.box))
                clock.charge(self.costs["signals"], items=0)
        if found.points is not None and found.box is not None:
            if found.detections is not None:
                self._calibration = BoxCalibration.measure(found.box, points_box(found.points)) or self._calibration
            elif self._calibration is not None:
                found.box = self._calibration.apply(points_box(found.points))
        return found, event

    def _cut_others(self, t: float, image: np.ndarray, detections: Detections, main: int | None) -> None:
        """Cut the faces beside the main one on a detected frame (when due) with every scorer's crop."""
        others = detections.others(main, limit=self.detect.max_others, min_px=self.detect.other_min_px)
        if not others or not self._other_schedule.take(t):
            return
        row = len(self._columns.frame_index) - 1
        for i in others:
            box = detections.box(i)
            for spec in self._specs:
                self._other_crops[spec.key].append(spec.crop(image, box))
            self._other_rows.append(row)

    def step(self, frame: SampledFrame) -> FrameStep:
        """Run one sampled frame through the path and record its columns."""
        clock = _Clock(self.timed)
        t, image = frame.pts_s, frame.image
        if self._fingerprint is not None:
            self._fingerprint.add(t, image)
        found, event = self._locate(t, image, clock)
        box, mesh_crop, landmarks, points = found.box, found.mesh_crop, found.landmarks, found.points
        self._points = points
        crop = None if box is None else self.crop_spec.crop(image, box)
        n_faces, face_score = self._faces
        detections, main = found.detections, found.main
        if detections is None:  # tracked: the box the mesh gave, with the last detection's score
            detections = Detections(np.asarray([box], np.float32), np.asarray([face_score], np.float32))
            main = 0
        cols = self._columns
        cols.frame_index.append(frame.index)
        cols.pts_s.append(t)
        cols.n_faces.append(n_faces)
        cols.face_score.append(np.nan if box is None else face_score)
        cols.bbox.append(_NO_BOX if box is None else box)
        returned = crop is not None and bool(self._crops) and self._columns.bbox[-2] is _NO_BOX
        if box is not None and crop is not None:
            self._followed = box
            self._crops.append(crop)
            for spec in self.extra_crops:
                self._extra[spec.key].append(spec.crop(image, box))
            if found.detections is not None:
                self._cut_others(t, image, found.detections, found.main)
        clock.charge(self.costs["detect"], items=0)
        if self._signals is not None:
            spent = self._identity.spent() if self._identity is not None else None
            values = self._signals.add(
                t, crop, mesh_crop, landmarks, image=image, points=points,
                occlude=self._occlusion_schedule.take(t), recheck=event, faces=n_faces,
            )  # fmt: skip
            cols.similarity_prev.append(values.similarity_prev)
            cols.ear_left.append(values.ear_left)
            cols.ear_right.append(values.ear_right)
            cols.occlusion.append(values.occlusion)
            cut = values.similarity_prev < self.signals_config.swap.cut_similarity  # False for NaN
            event = event or cut  # eyes closing is occlusion's event (a blink tells nothing of a spoof)
            clock.charge(self.costs["signals"])
            if self.timed and self._identity is not None and spent is not None:
                cpu, wall, n = (now - before for now, before in zip(self._identity.spent(), spent, strict=True))
                self.costs["identity"].add(cpu, wall, int(n))
                self.costs["signals"].add(-cpu, -wall, 0)  # the signals' time without the embeddings
        if crop is not None:
            if event or returned:  # returned: the face is back after frames without one
                self._score_schedule.event(t)
            self._scheduled.append(self._score_schedule.take(t))
        return FrameStep(detections, main, box, crop, mesh_crop, landmarks, points)

    def finish(self) -> SessionFrames:
        """The session's records, crops and verdicts (call :meth:`new_session` before the next one)."""
        clock = _Clock(self.timed)
        verdicts = self._signals.finish() if self._signals is not None else SessionVerdicts()
        if self._signals is not None:
            clock.charge(self.costs["signals"], items=0)
        cols = self._columns
        n = len(cols.frame_index)

        def column(values: list, width: int | None = None) -> np.ndarray:
            if len(values) != n:  # signals off: the column stays null
                return np.full((n,) if width is None else (n, width), np.nan, np.float32)
            return np.asarray(values, np.float32).reshape((n,) if width is None else (n, width))

        records = FrameRecords(
            frame_index=np.asarray(cols.frame_index, np.int32),
            pts_s=np.asarray(cols.pts_s, np.float64),
            n_faces=np.asarray(cols.n_faces, np.int32),
            face_score=np.asarray(cols.face_score, np.float32),
            bbox=np.asarray(cols.bbox, np.float32).reshape(n, 4),
            spoof_score=np.full(n, np.nan, np.float32),  # filled in once the crops are scored
            similarity_prev=column(cols.similarity_prev),
            ear_left=column(cols.ear_left),
            ear_right=column(cols.ear_right),
            occlusion=column(cols.occlusion, len(REGIONS)),
        )
        crops = _stack(self._crops, self.crop_spec)
        scorer_crops = {self.crop_spec.key: crops} | {s.key: _stack(self._extra[s.key], s) for s in self.extra_crops}
        series = self._signals.identity_series if self._signals is not None else None
        template = None if series is None else session_template(series, self.identity_threshold)
        fingerprint = None if self._fingerprint is None else self._fingerprint.finish()
        scheduled = np.asarray(self._scheduled, bool)
        counts = StageCounts(
            frames=n,
            detections=self._counts["detections"],
            meshes=self._counts["meshes"],
            occlusion=self._signals.occlusion_checks if self._signals is not None else 0,
            embeddings=len(series) if series is not None else 0,
            scheduled=int(scheduled.sum()),
            others=len(self._other_rows),
        )
        others = {spec.key: _stack(self._other_crops[spec.key], spec) for spec in self._specs}
        return SessionFrames(
            records, crops, verdicts, scorer_crops, template, series, fingerprint, scheduled, counts,
            others, np.asarray(self._other_rows, np.int32),
        )  # fmt: skip

    def run(self, frames: Iterable[SampledFrame]) -> SessionFrames:
        """One whole session: every frame of ``frames`` through :meth:`step`, then :meth:`finish`."""
        self.new_session()
        for frame in frames:
            self.step(frame)
        return self.finish()


@dataclass
class _Located:
    """Where one frame's main face is: the detections (None on a tracked frame), the main
    one, its box, and the face mesh's crop, landmarks and their frame pixels."""

    detections: Detections | None = None
    main: int | None = None
    box: Box | None = None
    mesh_crop: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    points: np.ndarray | None = None

    def mesh(self, mesh_crop: np.ndarray, landmarks: np.ndarray | None, points: np.ndarray | None) -> None:
        self.mesh_crop, self.landmarks, self.points = mesh_crop, landmarks, points


def _iou(a: Box, b: Box) -> float:
    return float(box_iou(np.asarray([a], np.float32), np.asarray(b, np.float32))[0])


def _stack(crops: list[np.ndarray], spec: CropSpec) -> np.ndarray:
    return np.stack(crops) if crops else np.zeros((0, spec.size, spec.size, 3), np.uint8)


class _Clock:
    """Charges the CPU and wall time since the last charge to a stage, when timing is on."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.cpu, self.wall = (time.process_time(), time.perf_counter()) if enabled else (0.0, 0.0)

    def charge(self, cost: StageCost, items: int = 1) -> None:
        if not self.enabled:
            return
        cpu, wall = time.process_time(), time.perf_counter()
        cost.add(cpu - self.cpu, wall - self.wall, items)
        self.cpu, self.wall = cpu, wall
