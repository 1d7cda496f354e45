"""Which recording a video is: perceptual hashes of its frames, sampled by time.

A 64-bit DCT hash (pHash) of the whole frame changes by a few bits when the video is
re-encoded, resized or recompressed, and by about half its bits between different
scenes. :class:`FingerprintTrack` hashes the sampled frames ``hz`` times a second; two
sessions are the same recording when most of the shorter one's hashes find a close hash
in the other at one consistent time offset (:func:`pipeline.links.video.same_recording`),
which a trimmed copy keeps too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_SIDE, _LOW = 32, 8  # frames shrink to 32 x 32 grey; the 8 x 8 lowest DCT frequencies make the hash


def frame_hash(image: np.ndarray) -> int:
    """The 64-bit perceptual hash of an RGB (or grey) frame: each low DCT frequency above
    the median of the 63 non-constant ones sets its bit.

    >>> rng = np.random.default_rng(0)
    >>> frame = cv2.resize(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), (640, 360))
    >>> frame_hash(frame) == frame_hash(cv2.resize(frame, (320, 180)))
    True
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:_LOW, :_LOW].reshape(-1)
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


@dataclass(frozen=True)
class Fingerprint:
    """A video's frame hashes and their times (seconds)."""

    times: np.ndarray  # float64 (K,)
    hashes: np.ndarray  # uint64 (K,)

    def __len__(self) -> int:
        return len(self.times)


class FingerprintTrack:
    """Hashes a session's sampled frames ``hz`` times a second (:meth:`add` per sampled frame)."""

    def __init__(self, hz: float) -> None:
        if not hz > 0:
            raise ValueError(f"fingerprint rate must be > 0 per second, got {hz}")
        self.step = 1.0 / hz
        self._next = -math.inf
        self._times: list[float] = []
        self._hashes: list[int] = []

    def add(self, t: float, image: np.ndarray) -> None:
        if t + 1e-6 < self._next:
            return
        self._next = t + self.step
        self._times.append(t)
        self._hashes.append(frame_hash(image))

    def finish(self) -> Fingerprint:
        return Fingerprint(np.asarray(self._times, np.float64), np.asarray(self._hashes, np.uint64))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every hash of ``a`` (K,) and of ``b`` (M,), int (K, M)."""
    x = np.bitwise_xor(a[:, None].astype(np.uint64), b[None, :].astype(np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1).astype(np.int32)
