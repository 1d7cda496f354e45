"""Did the eyes blink? Per-frame eye aspect ratio and the blinks a session's series shows.

A blink shuts both eyes for 100-400 ms, so this signal needs frames sampled densely
(about 10-15 fps; at 12 fps a 100 ms blink falls on one sample). A printed photo or a
frozen feed never blinks; a long enough session without a blink is a ``no_blink`` reason.

How much the eye aspect ratio (EAR) drops in a blink depends on the face: open EARs seen
here range from 0.14 to 0.34, and on small or narrow eyes a shut lid moves the landmarks
only a little. So closure is judged relative to the eye's own open level (a high
quantile of its EAR over the neighbouring second) and to the session's own EAR noise,
not against one absolute threshold, and both eyes are averaged so one glitching eye
does not make a blink on its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import BlinkConfig
from pipeline.faces.landmarks import EYE_CORNERS, eye_aspect_ratio


def eye_aspect_ratios(landmarks: np.ndarray | None) -> tuple[float, float]:
    """``(ear_left, ear_right)`` of one frame's face-mesh landmarks; NaN without landmarks."""
    if landmarks is None:
        return float("nan"), float("nan")
    return eye_aspect_ratio(landmarks, "left"), eye_aspect_ratio(landmarks, "right")


def _as_series(times: Sequence[float], *series: Sequence[float]) -> tuple[np.ndarray, ...]:
    t = np.asarray(times, dtype=np.float64)
    out = [np.asarray(s, dtype=np.float64) for s in series]
    if t.ndim != 1 or any(s.shape != t.shape for s in out):
        raise ValueError(f"times and series must be 1-D of one length, got shapes {[t.shape] + [s.shape for s in out]}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    return (t, *out)


def open_baseline(times: np.ndarray, ear: np.ndarray, config: BlinkConfig) -> np.ndarray:
    """Per frame, the eye's open EAR: the lower of the ``baseline_quantile`` of the valid
    EARs in the ``baseline_s`` before the frame and in the ``baseline_s`` after it; NaN
    where neither side has one or it is under ``min_open_ear``.

    Taking the lower side keeps the baseline right across a step of the open level (a
    new face or pose after a cut), where a centred window would mix both levels and make
    the lower one look shut; a blink is short enough that both sides see open eyes.
    """
    valid = np.isfinite(ear)
    past_lo = np.searchsorted(times, times - config.baseline_s, side="left")
    future_hi = np.searchsorted(times, times + config.baseline_s, side="right")
    out = np.full(len(times), np.nan)
    for i in range(len(times)):
        sides = [ear[a:b][valid[a:b]] for a, b in ((past_lo[i], i), (i + 1, future_hi[i]))]
        levels = [np.quantile(side, config.baseline_quantile) for side in sides if len(side)]
        if levels:
            out[i] = min(levels)
    out[~(out >= config.min_open_ear)] = np.nan
    return out


def _openness(ear_l: np.ndarray, ear_r: np.ndarray, ref_l: np.ndarray | float, ref_r: np.ndarray | float) -> np.ndarray:
    """Mean over the readable eyes of EAR / reference; NaN where neither eye is readable."""
    ratios = np.stack([ear_l / ref_l, ear_r / ref_r])  # a NaN reference leaves that eye out
    valid = np.isfinite(ratios)
    count = valid.sum(axis=0)
    total = np.where(valid, ratios, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _robust_sd(x: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation of the finite values (0 if none)."""
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else 0.0


def count_blinks(
    times: Sequence[float],
    ear_left: Sequence[float],
    ear_right: Sequence[float],
    config: BlinkConfig | None = None,
) -> list[tuple[float, float]]:
    """The blinks of a session as ``(start_s, end_s)``: first shut sample, first reopened sample.

    ``times`` are the frames' presentation times (seconds, increasing); the EARs are NaN
    where no face or no landmarks were found. A blink is an open frame, then at least
    ``min_closed_frames`` shut frames (missing ones allowed in between), then an open
    frame again, all within ``max_blink_s`` from the first frame after the open one to
    the reopened one. Shut eyes at the start or end of the series are not counted: their
    blink cannot be told from a long closure. Once a closure starts, it is judged against
    the baseline from before it, so a long closure cannot lower its own reference.

    >>> t = np.arange(12) / 12
    >>> ear = np.array([0.3] * 5 + [0.1, 0.1] + [0.3] * 5)
    >>> count_blinks(t, ear, ear)
    [(0.4166666666666667, 0.5833333333333334)]
    """
    config = config or BlinkConfig()
    t, ear_l, ear_r = _as_series(times, ear_left, ear_right)
    base_l, base_r = open_baseline(t, ear_l, config), open_baseline(t, ear_r, config)
    local = _openness(ear_l, ear_r, base_l, base_r)
    closed_ratio = min(config.closed_ratio, 1.0 - config.noise_depth * _robust_sd(local))
    blinks: list[tuple[float, float]] = []
    last_open: int | None = None
    i = 0
    while i < len(t):
        if not np.isfinite(local[i]):
            i += 1
            continue
        if local[i] >= config.open_ratio:
            last_open = i
        elif local[i] < closed_ratio and last_open is not None:
            ref = _openness(ear_l[i:], ear_r[i:], base_l[last_open], base_r[last_open])
            shut = ref < closed_ratio
            reopened = np.flatnonzero(ref >= config.open_ratio)
            if not len(reopened):
                break
            end = i + int(reopened[0])
            duration = t[end] - t[last_open + 1]
            if shut[: end - i].sum() >= config.min_closed_frames and duration <= config.max_blink_s:
                blinks.append((float(t[i]), float(t[end])))
            last_open = end
            i = end
        i += 1
    return blinks


def eyes_watchable(points: np.ndarray | None, config: BlinkConfig) -> bool:
    """Whether a frame's eyes can show a blink: face-mesh ``points`` in frame pixels, both eyes
    at least ``min_eye_px`` wide and the narrower at least ``min_eye_balance`` of the wider
    (a face turned aside foreshortens one eye). On smaller real eyes a shut lid moves the
    landmarks by a pixel or two: far fewer blinks are found there."""
    if points is None:
        return False
    widths = [float(np.linalg.norm(points[a, :2] - points[b, :2])) for a, b in EYE_CORNERS]
    return min(widths) >= config.min_eye_px and min(widths) >= config.min_eye_balance * max(widths)


def observed_eyes_s(
    times: Sequence[float], watchable: Sequence[bool], max_gap_s: float = BlinkConfig().max_gap_s
) -> float:
    """Seconds the eyes were watched: the time between consecutive samples whose eyes were
    both ``watchable`` (read, large, frontal, not covered) and at most ``max_gap_s`` apart. A
    blink lasts 0.1-0.4 s: in a sparser video (a 5 fps clip) a whole blink can fall between two
    samples, and that time watches nothing.

    >>> observed_eyes_s([0.0, 0.1, 0.2, 0.3, 0.5, 0.7], [True, True, False, True, True, True], 0.15)
    0.1
    """
    t = np.asarray(times, np.float64)
    ok = np.asarray(watchable, bool)
    if len(t) < 2:
        return 0.0
    step = np.diff(t)
    return round(float(step[ok[1:] & ok[:-1] & (step <= max_gap_s)].sum()), 6)


def no_blink(watched_s: float, blinks: Sequence[tuple[float, float]], config: BlinkConfig | None = None) -> bool:
    """True when the eyes were watched (:func:`observed_eyes_s`) for at least ``min_session_s``
    and never blinked (the ``no_blink`` reason). Sessions watched less say nothing either way."""
    config = config or BlinkConfig()
    return not blinks and watched_s >= config.min_session_s


@dataclass(frozen=True)
class EyeCue:
    """Settings of :class:`EyesClosing`: a drop under ``ratio`` of the eye's open level
    (the largest EAR of the last ``window_s``)."""

    ratio: float = 0.85
    window_s: float = 1.0


class EyesClosing:
    """The cheap cue that the eyes are closing (a blink, or a hand over an eye): the mean EAR
    of the readable eyes drops under a share of its level over the last second.

    >>> eyes = EyesClosing(EyeCue(ratio=0.8))
    >>> [eyes.add(t, ear) for t, ear in [(0.0, 0.3), (0.1, 0.3), (0.2, 0.2), (0.3, 0.3)]]
    [False, False, True, False]
    """

    def __init__(self, cue: EyeCue) -> None:
        self.cue = cue
        self._recent: deque[tuple[float, float]] = deque()

    def add(self, t: float, ear: float) -> bool:
        """Whether the eyes are closing at ``t`` (``ear`` NaN: unreadable, never closing)."""
        while self._recent and self._recent[0][0] < t - self.cue.window_s:
            self._recent.popleft()
        if math.isnan(ear):
            return False
        level = max((e for _, e in self._recent), default=ear)
        self._recent.append((t, ear))
        return ear < self.cue.ratio * level
