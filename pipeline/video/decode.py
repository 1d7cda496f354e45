"""How frames come out of a video: PyAV, streamed, sampled by presentation time, rotated upright.

A video is never held whole: frames are decoded one at a time and only the sampled
ones are converted to RGB arrays. Sampling follows timestamps, so variable-frame-rate
files are sampled evenly in time, not in frame counts. Phones store pixels sideways with
a display rotation that PyAV reports on each frame but does not apply; it is applied here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyarrow.fs as pafs

from pipeline.errors import DecodeError
from pipeline.storage import filesystem_for, is_remote

av.logging.set_level(av.logging.PANIC)  # ffmpeg's own chatter; failures still raise


@dataclass(frozen=True)
class VideoHeader:
    """What the container header says (not what decoding measured)."""

    codec: str
    width: int
    height: int
    duration_s: float | None
    average_fps: float | None


# Tags whose values say which device or program made a file (never location or owner tags).
_DEVICE_TAGS = (
    "com.apple.quicktime.make", "com.apple.quicktime.model", "com.android.manufacturer", "com.android.model",
    "make", "model",
)  # fmt: skip
_REPEAT_STRIDE = 61  # repeated frames are compared on every 61st byte of the luma plane


@dataclass(frozen=True)
class Provenance:
    """Facts of the file that tell how it was made (not verdicts): container and encoder tags,
    creation time, device and handler names where the file has them, and what decoding
    measured of its timing: the spread of frame intervals (coefficient of variation; 0 for
    a steady camera clock) and the share of frames identical to the one before."""

    container: str | None = None
    encoder: str | None = None
    creation_time: str | None = None
    device: str | None = None
    handler: str | None = None
    frame_interval_cv: float | None = None
    repeated_frame_ratio: float | None = None


class _TimingProbe:
    """Frame intervals and exact repeats, measured on every decoded frame (cheaply)."""

    def __init__(self) -> None:
        self.last_t: float | None = None
        self.intervals: list[float] = []
        self.repeats = 0
        self.frames = 0
        self._last_luma: np.ndarray | None = None

    def add(self, frame: av.VideoFrame, t: float) -> None:
        self.frames += 1
        if self.last_t is not None:
            self.intervals.append(t - self.last_t)
        self.last_t = t
        luma = np.frombuffer(memoryview(frame.planes[0]), np.uint8)[::_REPEAT_STRIDE]
        if (
            self._last_luma is not None
            and luma.shape == self._last_luma.shape
            and np.array_equal(luma, self._last_luma)
        ):
            self.repeats += 1
        self._last_luma = luma.copy()

    def interval_cv(self) -> float | None:
        if len(self.intervals) < 2:
            return None
        values = np.asarray(self.intervals)
        mean = float(values.mean())
        return float(values.std() / mean) if mean > 0 else None

    def repeated_ratio(self) -> float | None:
        return self.repeats / (self.frames - 1) if self.frames > 1 else None


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its index among the samples, its time, and RGB pixels upright."""

    index: int
    pts_s: float
    image: np.ndarray


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (counter-clockwise degrees, as ``VideoFrame.rotation`` reports)."""
    quarter_turns = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns)) if quarter_turns else image


def sample_times(times_s: list[float], sample_fps: float, max_frames: int) -> list[int]:
    """Indices of the frames a scan keeps from frames at ``times_s`` (seconds, ascending).

    One frame per ``1 / sample_fps`` slot of presentation time: the first frame at or
    after each slot's start. A slot without a frame (a gap in a variable-frame-rate file)
    is skipped rather than filled twice. This is the rule ``VideoReader.sampled`` applies
    while streaming.
    """
    picker = _TimeSampler(sample_fps)
    kept = [i for i, t in enumerate(times_s) if picker.take(t)]
    return kept[:max_frames]


class _TimeSampler:
    _TOLERANCE_S = 1e-3

    def __init__(self, sample_fps: float) -> None:
        self.step = 1.0 / sample_fps
        self.next_t = -math.inf

    def take(self, t: float) -> bool:
        if t + self._TOLERANCE_S < self.next_t:
            return False
        self.next_t = (math.floor((t + self._TOLERANCE_S) / self.step) + 1) * self.step
        return True


class VideoReader:
    """A video file opened for streaming sampled frames.

    >>> with VideoReader("clip.mp4", sample_fps=5, max_frames=64) as video:  # doctest: +SKIP
    ...     for frame in video.sampled():
    ...         print(frame.index, frame.pts_s, frame.image.shape)
    """

    def __init__(
        self, uri: str | os.PathLike, *, sample_fps: float = 5.0, max_frames: int = 64, max_pixels: int = 4096 * 4096
    ) -> None:
        if sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.uri = str(uri)
        self.sample_fps = sample_fps
        self.max_frames = max_frames
        self.frames_decoded = 0
        self.last_pts_s: float | None = None
        self._source = None
        try:
            self._source = _open_remote(self.uri) if is_remote(self.uri) else None
            if self._source is None and Path(self.uri).is_file() and Path(self.uri).stat().st_size == 0:
                raise DecodeError("empty file (0 bytes)")
            self._container = av.open(self._source or self.uri, mode="r")
        except BaseException as exc:
            if self._source is not None:
                self._source.close()
            error = _open_error(exc)
            if error is exc:
                raise
            raise error from exc
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["none"]
            self.close()
            raise DecodeError(f"no video stream (streams: {', '.join(kinds)})")
        stream = self._container.streams.video[0]
        if stream.codec_context is None:
            self.close()
            raise DecodeError("unsupported video codec: no decoder for the video stream")
        stream.thread_type = "AUTO"
        self._stream = stream
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            self.close()
            raise DecodeError(f"resolution {width}x{height} exceeds the limit of {max_pixels} pixels")
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration and stream.time_base
            else (self._container.duration / 1e6 if self._container.duration else None)
        )
        self.header = VideoHeader(
            codec=stream.codec_context.name,
            width=width,
            height=height,
            duration_s=duration,
            average_fps=float(stream.average_rate) if stream.average_rate else None,
        )
        self.rotation = 0  # measured from the frames: the display rotation they carry
        self._timing = _TimingProbe()

    def provenance(self) -> Provenance:
        """The file's tags, and the timing measured on the frames decoded so far."""
        tags = {str(k).lower(): str(v) for k, v in self._container.metadata.items()}
        stream_tags = {str(k).lower(): str(v) for k, v in self._stream.metadata.items()}
        device = " ".join(dict.fromkeys(tags[k] for k in _DEVICE_TAGS if tags.get(k))) or None
        return Provenance(
            container=self._container.format.name if self._container.format else None,
            encoder=tags.get("encoder") or stream_tags.get("encoder"),
            creation_time=tags.get("creation_time") or stream_tags.get("creation_time"),
            device=device,
            handler=stream_tags.get("handler_name"),
            frame_interval_cv=self._timing.interval_cv(),
            repeated_frame_ratio=self._timing.repeated_ratio(),
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the decoder."""
        self._container.close()
        if self._source is not None:
            self._source.close()

    def sampled(self) -> Iterator[SampledFrame]:
        """Sampled frames in presentation order, at most ``max_frames``, RGB uint8 and upright."""
        sampler = _TimeSampler(self.sample_fps)
        fallback_step = 1.0 / (self.header.average_fps or 25.0)
        t0: float | None = None
        emitted = 0
        try:
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                t = frame.time if frame.time is not None else (self.frames_decoded - 1) * fallback_step
                t0 = t if t0 is None else t0
                rel = t - t0
                self.last_pts_s = rel
                self._timing.add(frame, rel)
                if not sampler.take(rel):
                    continue
                self.rotation = int(frame.rotation or 0)
                yield SampledFrame(
                    index=emitted, pts_s=rel, image=upright(frame.to_ndarray(format="rgb24"), self.rotation)
                )
                emitted += 1
                if emitted >= self.max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise DecodeError(f"decoding failed after {self.frames_decoded} frames: {_reason(exc)}") from exc
        if self.frames_decoded == 0:
            raise DecodeError("the video stream holds no decodable frame")


def _open_error(exc: BaseException) -> BaseException:
    """The user-facing error for a video that cannot be opened (other exceptions pass through)."""
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return DecodeError("file not found")
    if isinstance(exc, PermissionError):
        return DecodeError("permission denied")
    if isinstance(exc, (av.error.FFmpegError, OSError, UnicodeDecodeError)):
        return DecodeError(f"not a readable video container: {_reason(exc)}")
    return exc


def _open_remote(uri: str):
    """A seekable stream of an object-storage video (read in ranges, never downloaded whole)."""
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(uri)
    if info.size == 0:
        raise DecodeError("empty file (0 bytes)")
    return fs.open_input_file(path)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0] if text else type(exc).__name__
