"""When the expensive stages of the per-frame path run: a few times a second, and on every
sampled frame for a while after something happens.

Decoding, the face mesh and the cheap cues (crop similarity, eye aspect ratio) run on every
sampled frame. Detection, the spoof scorers and occlusion cost more and change slowly, so
each runs on its own :class:`StageSchedule`: ``rate_hz`` times a second, and densely for
``dense_s`` after an event of the cheap cues (a cut, a face coming back or changing, eyes
closing; see :class:`~pipeline.session.frame_path.FramePath`), so a short event is never
seen only between two scheduled frames. ``rate_hz=None`` runs a stage on every frame.
"""

from __future__ import annotations

import math

_TOLERANCE_S = 1e-3  # sample times are rounded; a frame 1 ms early still counts as on time


class StageSchedule:
    """One stage's schedule over one session's sampled frames (times increasing).

    >>> s = StageSchedule(rate_hz=2.0, dense_s=0.25)
    >>> [t for t in (0.0, 0.25, 0.5, 0.75, 1.0) if s.take(t)]
    [0.0, 0.5, 1.0]
    >>> s.event(1.1); [t for t in (1.2, 1.3, 1.4, 1.5) if s.take(t)]
    [1.2, 1.3, 1.5]
    """

    def __init__(self, rate_hz: float | None, dense_s: float = 0.0) -> None:
        if rate_hz is not None and rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0 or None, got {rate_hz}")
        self.step = 0.0 if rate_hz is None else 1.0 / rate_hz
        self.dense_s = dense_s
        self.reset()

    def reset(self) -> None:
        """A new session: the next frame is due."""
        self._next_t = -math.inf
        self._dense_until = -math.inf

    def event(self, t: float) -> None:
        """Something happened at ``t``: every frame up to ``t + dense_s`` is due."""
        self._dense_until = max(self._dense_until, t + self.dense_s)

    def due(self, t: float) -> bool:
        """Whether the frame at ``t`` is due (on schedule or in a dense stretch), without taking it."""
        return t + _TOLERANCE_S >= self._next_t or t <= self._dense_until + _TOLERANCE_S

    def take(self, t: float) -> bool:
        """Whether the frame at ``t`` is due; if so, it counts as run."""
        if not self.due(t):
            return False
        self.ran(t)
        return True

    def ran(self, t: float) -> None:
        """The stage ran at ``t`` (on schedule or not): the next scheduled run is a step later."""
        if t + _TOLERANCE_S >= self._next_t:
            self._next_t = t + self.step
