"""What one session's video holds before scoring: sampled frames, faces, face crops, signals.

This is the CPU stage that runs in parallel Ray tasks: decode, detect, crop, and the
face-mesh signals (blinks, similarity, occlusion, swap, static). Its output is small
(per-frame rows, the session signals and crops at the model's input size), never the
frames themselves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pipeline.config import DecodeConfig, DetectConfig, SignalsConfig
from pipeline.decode import DecodeError, VideoReader
from pipeline.faces import FaceDetector, crop_main_face
from pipeline.landmarks import FaceMesh
from pipeline.occlusion import DEFAULT_OCCLUSION_DIR, OcclusionScorer
from pipeline.prefetch import Prefetch
from pipeline.signals import SessionSignals
from pipeline.sources import Session

log = logging.getLogger(__name__)

PREFETCH_FRAMES = 2  # decoded ahead of detection, per worker (two 720p frames: 5.5 MB)


@dataclass
class SessionAnalysis:
    """A session after decode, detection and cropping; ``crops[i]`` belongs to ``frames[crop_frame[i]]``."""

    session: Session
    error: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    frames_decoded: int = 0
    frames: list[dict] = field(default_factory=list)
    signals: dict = field(default_factory=dict)
    crops: np.ndarray | None = None
    crop_frame: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_crops(self) -> int:
        return len(self.crop_frame)


@lru_cache(maxsize=2)
def _detector(model_selection: int, min_confidence: float) -> FaceDetector:
    # One MediaPipe graph per worker process, reused by every session that process analyses.
    return FaceDetector(model_selection=model_selection, min_confidence=min_confidence)


@lru_cache(maxsize=1)
def _face_mesh() -> FaceMesh:
    return FaceMesh(tracking=True)


@lru_cache(maxsize=2)
def _occlusion(model: str | None, cache_dir: str | None) -> OcclusionScorer:
    return OcclusionScorer(model or DEFAULT_OCCLUSION_DIR, cache_dir=cache_dir)


def session_signals(config: SignalsConfig, cache_dir: str | None = None) -> SessionSignals | None:
    """A fresh signal collector for one session (process-wide models), or None when switched off.
    ``cache_dir`` keeps the occlusion model's ONNX export between processes."""
    if not config.enabled:
        return None
    return SessionSignals(config, _face_mesh(), _occlusion(config.occlusion.model, cache_dir) if config.occlusion.enabled else None)


def analyse_session(
    session: Session, decode: DecodeConfig, detect: DetectConfig, signals: SignalsConfig, *, input_size: int, crop_scale: float, cache_dir: str | None = None
) -> SessionAnalysis:
    """Decode, detect, crop and compute the signals of one session; a bad video becomes an
    analysis with ``error`` set."""
    started = time.perf_counter()
    result = SessionAnalysis(session=session)
    detector = _detector(detect.model_selection, detect.min_confidence)
    collector = session_signals(signals, cache_dir)
    crops: list[np.ndarray] = []
    try:
        with (
            VideoReader(session.uri, sample_fps=decode.sample_fps, max_frames=decode.max_frames, max_pixels=decode.max_pixels) as video,
            Prefetch(video.sampled(), depth=PREFETCH_FRAMES) as sampled,
        ):
            result.width, result.height = video.header.width, video.header.height
            followed = None  # the last main face box, followed while a face overlaps it
            for frame in sampled:
                dets = detector.detect(frame.image)
                row = {"frame_index": frame.index, "pts_s": frame.pts_s, "n_faces": len(dets)}
                main, crop = crop_main_face(frame.image, dets, size=input_size, scale=crop_scale, rule=detect.main_face, follow=followed if detect.follow_face else None)
                box = None
                if main is not None:
                    box = followed = tuple(float(v) for v in dets.boxes[main])
                    row.update(face_score=float(dets.scores[main]), bbox_x=box[0], bbox_y=box[1], bbox_w=box[2], bbox_h=box[3])
                    crops.append(crop)
                    result.crop_frame.append(len(result.frames))
                if collector is not None:
                    row.update(collector.add(frame.pts_s, frame.image, box, crop))
                result.frames.append(row)
            if collector is not None:
                result.signals = collector.finish()
            result.frames_decoded = video.frames_decoded
            result.rotation = video.rotation
            if video.rotation % 180:
                result.width, result.height = result.height, result.width
            header_duration = video.header.duration_s
            result.duration_s = header_duration if header_duration else video.last_pts_s
    except DecodeError as exc:
        result.error = str(exc)
    except MemoryError:
        result.error = "out of memory while decoding"
    except Exception as exc:  # one odd file must not take the run down: it becomes a failed row
        log.warning("analysing %s failed: %r", session.uri, exc)
        result.error = f"analysis failed: {type(exc).__name__}: {exc}"
    if result.error is not None:
        result.frames, result.crop_frame, result.signals, crops = [], [], {}, []
    result.crops = np.stack(crops) if crops else np.zeros((0, input_size, input_size, 3), np.uint8)
    result.seconds = time.perf_counter() - started
    return result
