"""What one session's video holds before scoring: sampled frames through the per-frame path.

This is the CPU stage that runs in parallel Ray tasks: decode (with the next frames decoded
ahead in a thread), then :class:`~pipeline.session.frame_path.FramePath` for every sampled
frame. Its output is small (the frame records, the verdicts and the crops at the model's
input size), never the frames themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.checkpoint import DEFAULT_ONNX_CACHE
from pipeline.config import DecodeConfig, DetectConfig, IdentityConfig, ScoringConfig, SignalsConfig
from pipeline.errors import DecodeError
from pipeline.faces.crop import CropSpec
from pipeline.session.frame_path import FramePath, SessionFrames
from pipeline.session.records import FrameRecords
from pipeline.signals.collector import SessionVerdicts
from pipeline.video.decode import DecodeReport, Provenance, VideoReader
from pipeline.video.prefetch import Prefetch
from pipeline.video.sources import Session

log = logging.getLogger(__name__)

PREFETCH_FRAMES = 2  # decoded ahead of detection, per worker (two 720p frames: 5.5 MB)


@dataclass(frozen=True)
class VideoFacts:
    """What decoding a session's video measured and its header said."""

    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    frames_decoded: int = 0
    provenance: Provenance = field(default_factory=Provenance)
    decoding: DecodeReport | None = None  # None: the session failed before it was decoded to the end

    @property
    def partial(self) -> bool:
        """Whether part of the video went unread for a fault of the file (see :meth:`DecodeReport.partial`)."""
        return self.decoding is not None and self.decoding.partial(self.duration_s, self.frames_decoded)


@dataclass
class SessionAnalysis:
    """A session after decode and the per-frame path, or the reason it failed (``error``)."""

    session: Session
    frames: SessionFrames
    video: VideoFacts = field(default_factory=VideoFacts)
    error: str | None = None
    seconds: float = 0.0

    @property
    def n_crops(self) -> int:
        return len(self.frames.crops)

    @classmethod
    def failed(
        cls, session: Session, reason: str, crop_size: int = 1, video: VideoFacts | None = None
    ) -> SessionAnalysis:
        """A session that produced nothing but a reason (and what its header said, if it opened)."""
        empty = SessionFrames(FrameRecords.empty(), np.zeros((0, crop_size, crop_size, 3), np.uint8), SessionVerdicts())
        return cls(session=session, frames=empty, video=video or VideoFacts(), error=reason)


def analyse_session(
    session: Session,
    decode: DecodeConfig,
    detect: DetectConfig,
    signals: SignalsConfig,
    *,
    crop: CropSpec,
    extra_crops: Sequence[CropSpec] = (),
    identity: IdentityConfig | None = None,
    fingerprint_hz: float | None = None,
    scoring: ScoringConfig | None = None,
    cache_dir: str | Path = DEFAULT_ONNX_CACHE,
) -> SessionAnalysis:
    """Decode one session and run its sampled frames through the per-frame path (with the
    identity embedding and the video fingerprint when asked, and the scorers' schedule of
    ``scoring``); a bad video becomes an analysis with ``error`` set."""
    started = time.perf_counter()
    path = FramePath(
        crop, detect, signals, extra_crops=extra_crops, identity=identity, fingerprint_hz=fingerprint_hz,
        scoring=scoring, cache_dir=cache_dir,
    )  # fmt: skip
    header = VideoFacts()  # what a session that fails part way keeps
    try:
        with (
            VideoReader(
                session.uri,
                sample_fps=decode.sample_fps,
                max_frames=decode.max_frames,
                max_pixels=decode.max_pixels,
                max_decoded_pixels=decode.max_decoded_pixels,
            ) as video,  # fmt: skip
            Prefetch(video.sampled(), depth=PREFETCH_FRAMES) as sampled,
        ):
            header = VideoFacts(width=video.header.width, height=video.header.height)
            frames = path.run(sampled)
            width, height = video.header.width, video.header.height
            if video.rotation % 180:
                width, height = height, width
            decoding = video.report()
            facts = VideoFacts(
                # the header's, unless the frames reach further (timestamps that restart, a header that lies)
                duration_s=max(video.header.duration_s or 0.0, decoding.decoded_until_s or 0.0) or None,
                width=width,
                height=height,
                rotation=video.rotation,
                frames_decoded=video.frames_decoded,
                provenance=video.provenance(),
                decoding=decoding,
            )
        result = SessionAnalysis(session=session, frames=frames, video=facts)
    except DecodeError as exc:
        result = SessionAnalysis.failed(session, str(exc), crop.size, header)
    except MemoryError:
        result = SessionAnalysis.failed(session, "out of memory while decoding", crop.size, header)
    except Exception as exc:  # one odd file must not take the run down: it becomes a failed row
        log.warning("analysing %s failed: %r", session.uri, exc)
        result = SessionAnalysis.failed(session, f"analysis failed: {type(exc).__name__}: {exc}", crop.size, header)
    result.seconds = time.perf_counter() - started
    return result
