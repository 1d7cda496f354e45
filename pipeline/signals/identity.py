"""Who the main face is over a session: embeddings at a low rate and around candidate cuts,
the session's template, and swaps found as a change of identity.

Embedding every sampled frame would cost more than the rest of the per-frame path, and
identity changes only at a cut. So :class:`IdentityTrack` embeds the main face
``rate_hz`` times a second, and at every candidate cut (an abrupt crop-similarity drop,
or a face coming back after frames without one) both the frame after it and the frame
before it (kept for that). Faces too small, too turned or with a covered region are
refused and counted, never embedded.

:func:`identity_swaps` compares the mean embedding of the ``window_s`` before each
candidate with the mean after it: at or over the identity threshold, the main face became
another person there. The session's template (:func:`session_template`) is the mean of
the embeddings that agree with the largest group of one person, so a swapped-in face or
a stray bad frame does not blur it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import IdentityConfig
from pipeline.faces.identity import EMBEDDING_DIM, FaceEmbedder, unusable


@dataclass(frozen=True)
class IdentitySeries:
    """One session's main-face embeddings: their times (increasing) and vectors (K, 128);
    ``refused`` counts the scheduled frames whose face was unusable, by reason."""

    times: np.ndarray  # float64 (K,)
    vectors: np.ndarray  # float32 (K, 128)
    refused: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.times.shape != (len(self.vectors),) or self.vectors.shape[1:] != (EMBEDDING_DIM,):
            raise ValueError(f"times {self.times.shape} and vectors {self.vectors.shape} do not match")

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class IdentityTemplate:
    """A session's main-face template (biometric data): the mean embedding of ``frames`` frames."""

    vector: np.ndarray  # float32 (128,)
    frames: int


class IdentityTrack:
    """Schedules and computes one session's main-face embeddings (:meth:`add` per frame with landmarks)."""

    def __init__(self, config: IdentityConfig, embedder: FaceEmbedder) -> None:
        self.config = config
        self.embedder = embedder
        self._times: list[float] = []
        self._vectors: list[np.ndarray] = []
        self.refused: dict[str, int] = {}
        self._next_t = -math.inf
        self._prev: tuple[float, np.ndarray, np.ndarray] | None = None  # the last frame not embedded
        self._due = False  # an embedding was due (scheduled, or after a cut) and refused: try the next frame
        self._cpu_s = self._wall_s = 0.0

    def __len__(self) -> int:
        """Embeddings so far."""
        return len(self._times)

    def spent(self) -> tuple[float, float, float]:
        """CPU seconds, wall seconds and embeddings so far (alignment and network)."""
        return self._cpu_s, self._wall_s, float(len(self._times))

    def add(self, t: float, image: np.ndarray, points: np.ndarray, *, cut: bool, covered: bool = False) -> None:
        """One frame with a main face: ``points`` its face-mesh landmarks in ``image`` pixels,
        ``cut`` whether a strong cut lies just before it, ``covered`` whether its face is
        largely occluded (then it is not embedded). A frame that is due but refused leaves
        the next one due."""
        cpu, wall = time.process_time(), time.perf_counter()
        frames: list[tuple[float, np.ndarray, np.ndarray]] = []
        if cut and self._prev is not None:
            frames.append(self._prev)
        self._prev = None
        due = cut or self._due or t >= self._next_t
        if due:
            frames.append((t, image, points))
        elif not covered:
            self._prev = (t, image, points)
        chips: list[np.ndarray] = []
        times: list[float] = []
        for ft, fimage, fpoints in frames:
            reason = (
                "covered"
                if covered and ft == t
                else unusable(fpoints, min_eye_px=self.config.min_eye_px, max_turn=self.config.max_turn)
            )
            if reason is not None:
                self.refused[reason] = self.refused.get(reason, 0) + 1
                continue
            chips.append(self.embedder.chip(fimage, fpoints))
            times.append(ft)
        self._due = due and t not in times
        if due and not self._due:
            self._next_t = t + 1.0 / self.config.rate_hz
        if chips:
            self._times.extend(times)
            self._vectors.extend(self.embedder.embed(chips))
        self._cpu_s += time.process_time() - cpu
        self._wall_s += time.perf_counter() - wall

    def gap(self) -> None:
        """A frame without a face: the kept previous frame is no longer just before the next one."""
        self._prev = None

    def finish(self) -> IdentitySeries:
        """The session's embeddings, in time order."""
        vectors = np.asarray(self._vectors, np.float32).reshape(-1, EMBEDDING_DIM)
        return IdentitySeries(np.asarray(self._times, np.float64), vectors, dict(self.refused))


def session_template(series: IdentitySeries, threshold: float) -> IdentityTemplate | None:
    """The mean embedding of the largest group of embeddings within ``threshold`` of one
    of them (the medoid with most neighbours); None without embeddings."""
    if not len(series):
        return None
    v = series.vectors.astype(np.float64)
    dist = np.sqrt(np.maximum(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1), 0.0))
    near = dist < threshold
    centre = int(np.argmax(near.sum(axis=1)))
    members = near[centre]
    return IdentityTemplate(vector=v[members].mean(axis=0).astype(np.float32), frames=int(members.sum()))


@dataclass(frozen=True)
class IdentitySwap:
    """A change of the main face's identity: the first frame after it and the embedding distance across it."""

    at_s: float
    distance: float


def distance_across(series: IdentitySeries, at_s: float, window_s: float) -> float | None:
    """Distance of the mean embedding of the ``window_s`` before ``at_s`` to the mean from
    ``at_s`` on; None without an embedding on either side."""
    t, v = series.times, series.vectors.astype(np.float64)
    before = v[(t >= at_s - window_s) & (t < at_s)]
    after = v[(t >= at_s) & (t < at_s + window_s)]
    if not len(before) or not len(after):
        return None
    return float(np.linalg.norm(before.mean(axis=0) - after.mean(axis=0)))


def identity_swaps(
    candidates: Sequence[float], series: IdentitySeries, *, threshold: float, window_s: float
) -> list[IdentitySwap] | None:
    """The candidate times (increasing) across which the mean embedding of the ``window_s``
    before and the mean after lie at least ``threshold`` apart. Consecutive embeddings that
    far apart with no candidate between them add a candidate at the later one. Of
    candidates within ``window_s`` of each other, the one with the larger distance counts.
    None when identity cannot tell: no embedding, or candidates but none with embeddings on
    both sides."""
    t, v = series.times, series.vectors.astype(np.float64)
    points = set(candidates)
    if len(series) > 1:
        steps = np.linalg.norm(np.diff(v, axis=0), axis=1)
        for i in np.flatnonzero(steps >= threshold):
            if not any(t[i] < c <= t[i + 1] for c in candidates):
                points.add(float(t[i + 1]))
    judged = not points and len(series) > 0  # embeddings and no candidate at all: one identity throughout
    found: list[IdentitySwap] = []
    for c in sorted(points):
        d = distance_across(series, c, window_s)
        if d is None:
            continue
        judged = True
        if d < threshold:
            continue
        if found and c - found[-1].at_s < window_s:
            if d > found[-1].distance:
                found[-1] = IdentitySwap(c, d)
            continue
        found.append(IdentitySwap(c, d))
    return found if judged else None
