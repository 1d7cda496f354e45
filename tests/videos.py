"""Registry of the videos the tests generate: each a small real file written with PyAV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from training.data.video_writer import write_video


def face_scene(shift: int = 0, size: tuple[int, int] = (640, 480), face_px: int = 300) -> np.ndarray:
    """A grey scene with the astronaut photograph's face (public domain, shipped by scikit-image)."""
    w, h = size
    canvas = np.full((h, w, 3), 90, np.uint8)
    face = cv2.resize(skimage.data.astronaut(), (face_px, face_px), interpolation=cv2.INTER_AREA)
    x, y = (w - face_px) // 2 + shift, (h - face_px) // 2
    canvas[y : y + face_px, x : x + face_px] = face
    return canvas


def face_frames(n: int = 20) -> Iterator[np.ndarray]:
    for i in range(n):
        yield face_scene(shift=(i % 5) * 4 - 8)


def write_face_video(path: Path, *, n: int = 20, fps: float = 10.0) -> Path:
    """An upright face video."""
    return write_video(path, face_frames(n), fps=fps)


def write_sideways_face_video(path: Path, *, n: int = 20, fps: float = 10.0) -> Path:
    """A face video stored as phones do: pixels turned 90 degrees clockwise, display rotation 90."""
    return write_video(path, (np.ascontiguousarray(np.rot90(f, -1)) for f in face_frames(n)), fps=fps, rotation=90)


def write_no_face_video(path: Path, *, n: int = 15, fps: float = 10.0) -> Path:
    """Moving gradients and no face."""
    ramp = np.linspace(0, 255, 320, dtype=np.float32)
    return write_video(
        path,
        (np.dstack([np.roll(ramp, 7 * i)[None, :].repeat(240, 0)] * 3).astype(np.uint8) for i in range(n)),
        fps=fps,
    )


def write_text_as_video(path: Path) -> Path:
    path.write_text("this is not a video\n")
    return path


def write_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_truncated(path: Path, source: Path) -> Path:
    """The first third of a real video: the container index is cut off."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_audio_only(path: Path, *, seconds: float = 1.0) -> Path:
    """An .mp4 holding one AAC audio stream (a 440 Hz tone) and no video."""
    import av

    rate = 44100
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_bit_flipped(path: Path, source: Path, *, seed: int = 0, flips: int = 200) -> Path:
    """A real video with random bytes in its middle (the frame data, not the index) overwritten."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(len(data) // 4, len(data) // 2, flips):
        data[i] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


def write_unknown_codec(path: Path) -> Path:
    """An AVI whose video stream claims a codec (fourcc ``ZZZZ``) that no decoder knows."""
    source = write_video(path.with_suffix(".src.avi"), face_frames(5), fps=10.0, codec="mpeg4")
    data = source.read_bytes().replace(b"FMP4", b"ZZZZ")
    source.unlink()
    path.write_bytes(data)
    return path


def write_huge_resolution(path: Path, side: int = 4100) -> Path:
    """One grey frame of ``side`` x ``side`` pixels: more than a scan accepts by default."""
    return write_video(path, iter([np.full((side, side, 3), 100, np.uint8)]), fps=1.0)


def write_rendered_session(
    path: Path,
    face_sources,
    *,
    kind: str = "swap",
    seconds: float = 2.5,
    fps: float = 12.0,
    subject: str = "astronaut",
    seed: int = 5,
) -> Path:
    """A rendered KYC-like session with a blink as H.264: for ``kind='swap'`` two subjects and a
    swap half way, otherwise ``subject`` (``live``, ``print``, ``replay``)."""
    from training.data.synth import SessionSpec, render_session_frames

    if kind == "swap":
        spec = SessionSpec(path.stem, kind, ("grace_hopper", "astronaut"), duration_s=seconds, fps=fps,
                           swap_at_s=seconds / 2, swap_to="live", blinks=((0.5, 0.2),), seed=5)  # fmt: skip
    else:
        spec = SessionSpec(path.stem, kind, (subject,), duration_s=seconds, fps=fps, blinks=((0.5, 0.2),), seed=seed)
    return write_video(path, render_session_frames(spec, face_sources, upright=True), fps=fps)


def write_reencoded(source: Path, target: Path, *, scale: float, skip_s: float) -> Path:
    """``source`` decoded and written again: smaller, more compressed, its first ``skip_s`` cut off
    (the same recording, as a re-upload would be)."""
    import av

    frames = []
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= skip_s:
                w, h = int(frame.width * scale) // 2 * 2, int(frame.height * scale) // 2 * 2
                frames.append(frame.reformat(width=w, height=h, format="rgb24").to_ndarray())
    return write_video(target, frames, fps=15.0, crf=32)


def write_joined_clips(path: Path, clips: list[tuple[list[np.ndarray], list[float]]]) -> Path:
    """MPEG-TS clips joined end to end (as ``cat a.ts b.ts`` joins them), each clip given as its
    frames and their presentation times: times that start again at 0 restart the timestamps,
    a clip of another frame size changes the resolution mid-stream."""
    parts = []
    for i, (frames, times) in enumerate(clips):
        part = write_video(path.with_suffix(f".part{i}.ts"), frames, times_s=times)
        parts.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(parts))
    return path


def _remux(source: Path, target: Path, *, options: dict[str, str] | None = None, garbage: frozenset[int] = frozenset()):
    """``source``'s video packets muxed again into ``target``; the packets numbered in ``garbage``
    get random bytes of the same length (a decoder rejects them)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(source)) as src, av.open(str(target), "w", options=options or {}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        packets = (p for p in src.demux(src.streams.video[0]) if p.dts is not None)
        for k, packet in enumerate(packets):
            if k in garbage:
                bad = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                bad.pts, bad.dts, bad.time_base, bad.is_keyframe = packet.pts, packet.dts, packet.time_base, False
                packet = bad
            packet.stream = stream
            out.mux(packet)
    return target


def write_with_bad_packets(path: Path, source: Path, bad: frozenset[int]) -> Path:
    """``source`` as Matroska with the packets numbered in ``bad`` (0 = the first) overwritten by noise."""
    return _remux(source, path, garbage=bad)


def write_cut_short(path: Path, source: Path, keep: float) -> Path:
    """``source`` with its index first (``faststart``), then cut after ``keep`` of its bytes: the
    header promises every frame, the file holds only the first ones (an interrupted upload)."""
    whole = _remux(source, path.with_suffix(".whole.mp4"), options={"movflags": "faststart"})
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_many_streams(path: Path, streams: int = 1001) -> Path:
    """An MP4 declaring ``streams`` video tracks (its one track's ``trak`` box repeated): more
    than libavformat's limit of 1000 streams."""
    import struct

    def boxes(data: bytes, start: int = 0) -> Iterator[tuple[bytes, int, int]]:
        while start < len(data):
            size, kind = struct.unpack(">I4s", data[start : start + 8])
            yield kind, start, size
            start += size

    one = write_video(path.with_suffix(".one.mp4"), iter([np.full((64, 64, 3), 90, np.uint8)] * 3), fps=10.0)
    data = one.read_bytes()
    one.unlink()
    top = {kind: (start, size) for kind, start, size in boxes(data)}
    start, size = top[b"moov"]  # after mdat (no faststart): chunk offsets stay valid
    moov = data[start : start + size]
    children = [(kind, moov[s : s + n]) for kind, s, n in boxes(moov, 8)]
    body = b"".join(box for kind, box in children if kind != b"trak")
    body += b"".join(box for kind, box in children if kind == b"trak") * streams
    path.write_bytes(data[:start] + struct.pack(">I4s", 8 + len(body), b"moov") + body)
    return path
