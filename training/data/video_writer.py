"""Writing frames to a video file with PyAV: synthetic sessions, demos and test fixtures."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    rotation: int = 0,
    times_s: Iterable[float] | None = None,
    crf: int = 20,
) -> Path:
    """Encode RGB uint8 frames (all the same size, even sides) into ``path``.

    ``rotation`` is written as the container's display rotation, counter-clockwise in
    degrees (as phones do: the pixels are stored sideways and players rotate them).
    ``times_s`` gives each frame's presentation time, for variable-frame-rate files;
    by default frames are ``1/fps`` apart.
    """
    path = Path(path)
    time_base = Fraction(1, 6000)  # exact for 24, 25, 30, 50 and 60 fps; < 2**16 for mpeg4
    times = iter(times_s) if times_s is not None else None
    with av.open(str(path), "w") as container:
        stream: av.VideoStream | None = None
        for i, rgb in enumerate(frames):
            if stream is None:
                h, w = rgb.shape[:2]
                added = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
                assert isinstance(added, av.VideoStream), f"{codec} is not a video codec"
                stream = added
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
                if rotation:
                    stream.set_display_rotation(rotation)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            t = next(times) if times is not None else i / fps
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is None:
            raise ValueError("write_video needs at least one frame")
        for packet in stream.encode():
            container.mux(packet)
    return path
