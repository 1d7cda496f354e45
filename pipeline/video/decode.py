"""How frames come out of a video: PyAV, streamed, sampled by presentation time, rotated upright.

A video is never held whole: frames are decoded one at a time and only the sampled
ones are converted to RGB arrays. Sampling follows timestamps, so variable-frame-rate
files are sampled evenly in time, not in frame counts. Phones store pixels sideways with
a display rotation that PyAV reports on each frame but does not apply; it is applied here.

Archives hold files that lie, and what decoding found is reported, never smoothed over
(:class:`DecodeReport`): a packet the decoder rejects is skipped and counted; a container
that cannot be read further ends the decode with what was read; timestamps that restart
(clips joined end to end) continue one timeline; every frame, not only the header, is held
to the pixel limit; and a session's decoded pixels have a budget beside its time limit.
"""

from __future__ import annotations

import errno
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

# FFmpeg's logs stay off (PyAV's default; failures still raise). Any level, PANIC included,
# routes them through a Python callback that FFmpeg's decoding threads call: freeing a
# frame-threaded decoder stopped mid-stream (a long video at its frame cap) then waited on
# those threads while they waited for the GIL, and the process hung (PyAV-Org/PyAV#909).
av.logging.set_level(None)


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


END_OF_STREAM = "end"  # the stream was decoded to its end
END_FRAME_CAP = "frame_cap"  # decode.max_frames frames were sampled: the rest was not read
END_READ_ERROR = "read_error"  # the container could not be read further (a truncated or damaged file)


@dataclass(frozen=True)
class DecodeReport:
    """What decoding one video found, beside the frames: how it ended (``end``: one of
    ``end``, ``frame_cap``, ``read_error``), packets the decoder rejected and skipped,
    restarts of the timestamps, changes of the frame size, how far the decoded frames reach
    (``decoded_until_s``, on the one timeline) and the frames the header promised."""

    end: str = END_OF_STREAM
    bad_packets: int = 0
    timestamp_resets: int = 0
    size_changes: int = 0
    decoded_until_s: float | None = None
    header_frames: int | None = None

    def partial(self, duration_s: float | None, frames_decoded: int) -> bool:
        """Whether part of the video went unread for a fault of the file (not the frame cap):
        bad packets, a read error, or a decode that ended well short of what the header says."""
        if self.bad_packets or self.end == END_READ_ERROR:
            return True
        if self.end != END_OF_STREAM:
            return False
        if self.header_frames and frames_decoded < _SHORT_SHARE * self.header_frames:
            return True
        return bool(
            duration_s and self.decoded_until_s is not None and self.decoded_until_s < _SHORT_SHARE * duration_s
        )


# Demuxers that read other files or URLs named inside the input (a concat list, a playlist):
# a session is the file it names, never frames taken from elsewhere.
REFERENCE_FORMATS = frozenset({"concat", "hls", "dash", "imf"})
_SHORT_SHARE = 0.95  # a decode reaching under this share of the header's frames or duration is short


class _Timeline:
    """Frame timestamps made one forward timeline from 0: a jump back by more than two frame
    intervals (clips joined end to end, each restarting at 0) continues one interval after
    the last frame instead, and is counted; a missing timestamp is one interval on."""

    def __init__(self, step_s: float) -> None:
        self.step = step_s
        self.resets = 0
        self.last: float | None = None
        self._offset: float | None = None

    def place(self, t: float | None) -> float:
        """The frame's time on the timeline, from its presentation time (None: unknown)."""
        after = (self.last + self.step) if self.last is not None else 0.0
        if t is None:
            rel = after
        else:
            if self._offset is None:
                self._offset = after - t
            rel = t + self._offset
            if self.last is not None and rel < self.last - 2 * self.step:
                self._offset += after - rel
                rel = after
                self.resets += 1
        self.last = rel
        return rel


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
        self,
        uri: str | os.PathLike,
        *,
        sample_fps: float = 5.0,
        max_frames: int = 64,
        max_pixels: int = 4096 * 4096,
        max_decoded_pixels: float | None = None,
    ) -> None:
        if sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.uri = str(uri)
        self.sample_fps = sample_fps
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.max_decoded_pixels = max_decoded_pixels
        self.frames_decoded = 0
        self._source = None
        try:
            self._source = _open_remote(self.uri) if is_remote(self.uri) else None
            if self._source is None and _empty(self.uri):
                raise DecodeError("empty file (0 bytes)")
            self._container = av.open(self._source or self.uri, mode="r")
        except BaseException as exc:
            if self._source is not None:
                self._source.close()
            error = _open_error(exc, self.uri)
            if error is exc:
                raise
            raise error from exc
        if self._container.format and self._container.format.name in REFERENCE_FORMATS:
            name = self._container.format.name
            self.close()
            raise DecodeError(f"a list of other files ({name}), not a video: its references are not followed")
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
        self._timeline = _Timeline(1.0 / (self.header.average_fps or 25.0))
        self._end = END_OF_STREAM
        self._bad_packets = 0
        self._size_changes = 0
        self._header_frames = int(stream.frames) if stream.frames else None

    def report(self) -> DecodeReport:
        """What decoding found so far (see :class:`DecodeReport`)."""
        last = self._timeline.last
        return DecodeReport(
            end=self._end,
            bad_packets=self._bad_packets,
            timestamp_resets=self._timeline.resets,
            size_changes=self._size_changes,
            decoded_until_s=None if last is None else last + self._timeline.step,
            header_frames=self._header_frames,
        )

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
        """Sampled frames in presentation order, at most ``max_frames``, RGB uint8 and upright.

        A frame over ``max_pixels`` (the stream changed resolution) or decoded pixels over
        ``max_decoded_pixels`` fail the video (:class:`DecodeError`), as does a stream with no
        decodable frame; bad packets and an unreadable tail do not (:meth:`report`)."""
        sampler = _TimeSampler(self.sample_fps)
        size = (self.header.width, self.header.height)
        pixels = 0
        emitted = 0
        for frame in self._frames():
            self.frames_decoded += 1
            rel = self._timeline.place(frame.time)
            if (frame.width, frame.height) != size:
                size = (frame.width, frame.height)
                self._size_changes += 1
                if frame.width * frame.height > self.max_pixels:
                    raise DecodeError(
                        f"the stream changes resolution to {frame.width}x{frame.height} at {rel:.2f} s,"
                        f" over the limit of {self.max_pixels} pixels"
                    )
            pixels += frame.width * frame.height
            if self.max_decoded_pixels is not None and pixels > self.max_decoded_pixels:
                raise DecodeError(
                    f"decoding budget spent: {pixels:.3g} pixels in {self.frames_decoded} frames by {rel:.2f} s"
                    f" of video (decode.max_decoded_pixels = {self.max_decoded_pixels:.3g})"
                )
            self._timing.add(frame, rel)
            if not sampler.take(rel):
                continue
            self.rotation = int(frame.rotation or 0)
            yield SampledFrame(index=emitted, pts_s=rel, image=upright(frame.to_ndarray(format="rgb24"), self.rotation))
            emitted += 1
            if emitted >= self.max_frames:
                self._end = END_FRAME_CAP
                return
        if self.frames_decoded == 0:
            reason = f" ({self._bad_packets} packet(s) rejected by the decoder)" if self._bad_packets else ""
            raise DecodeError(f"the video stream holds no decodable frame{reason}")

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Every decodable frame: a packet the decoder rejects is skipped and counted; a read
        error (a disk's or the object store's) ends the stream with what was read, the
        decoder flushed. ffmpeg's demuxers resync over damaged bytes of their own accord."""
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    self._bad_packets += 1
                    continue
                yield from frames
            return
        except (av.error.FFmpegError, OSError):
            self._end = END_READ_ERROR
        try:
            yield from self._stream.decode(None)
        except av.error.FFmpegError:
            pass


def _open_error(exc: BaseException, uri: str) -> BaseException:
    """The user-facing error for a video that cannot be opened (other exceptions pass through)."""
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, av.error.FFmpegError) and exc.errno == errno.ENOMEM:
        return DecodeError(
            "the container is beyond what ffmpeg accepts: it gave up reading the header ('Cannot allocate memory',"
            " e.g. more than its limit of 1000 streams, or an absurd header size); not read"
        )
    if isinstance(exc, av.error.FFmpegError) and isinstance(exc, PermissionError) and _first_byte(uri) is not None:
        return DecodeError(  # the file itself is readable: ffmpeg refused a file it names (a concat list)
            "the file refers to other files that may not be read (a list of files named like a video): not followed"
        )
    if isinstance(exc, FileNotFoundError):
        return DecodeError("file not found")
    if isinstance(exc, PermissionError):
        return DecodeError("permission denied")
    if isinstance(exc, (av.error.FFmpegError, OSError, UnicodeDecodeError)):
        return DecodeError(f"not a readable video container: {_reason(exc)}")
    return exc


def _first_byte(uri: str) -> bytes | None:
    """The local file's first byte (``b""`` when it holds none), None when this process cannot
    read the file itself (not what it refers to)."""
    try:
        with open(uri, "rb") as f:
            return f.read(1)
    except OSError:
        return None


def _empty(uri: str) -> bool:
    """Whether a local file holds no byte: its size says 0 and a read finds none (files such as
    /proc's report size 0 and still hold text)."""
    path = Path(uri)
    return path.is_file() and not path.stat().st_size and _first_byte(uri) == b""


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
