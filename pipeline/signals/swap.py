"""Did the face in the stream change, or never change at all? Identity swap and static stream.

Two per-frame cues, two session verdicts:

- :func:`similarity` of consecutive face crops: how alike two crops look, after
  lighting normalisation and a small search over shift and scale, so that head motion,
  detector jitter and lighting leave it near 1 while a cut to another face drops it.
- :func:`face_shape`: the rigid part of the 3-D face-mesh geometry, which head pose and
  lighting do not move but which differs between people.
- :func:`detect_swap`: a swap is an abrupt similarity drop *and* a lasting change of the
  face shape between the second before and the second after it. A drop alone (a hand
  passing, a detector box jump) or slow drift alone (turning, moving) is not a swap.
- :func:`detect_static`: the face crops stay practically identical for a long time: a
  frozen (or looped still) injected feed. A photo in front of a real camera is *not*
  static by this measure, even one held perfectly still: sensor noise and detector
  jitter make its consecutive crops differ about as much as a live face's do (measured
  on synthetic still prints), and a hand-held one moves. The spoof classifier and the
  missing blinks are the signals for those.

``similarity_prev`` of a frame is its similarity to the most recent earlier frame that
had a face crop (NaN for the first one), so a face that vanishes and returns is compared
across the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.config import StaticConfig, SwapConfig
from pipeline.faces.landmarks import LEFT_EYE_IDX, LIPS_IDX, RIGHT_EYE_IDX

# Face-mesh points whose geometry does not change with expression: everything but the
# eyelids, lips and irises (points 468+), which move in blinks and speech.
SHAPE_IDX = tuple(i for i in range(468) if i not in set(LEFT_EYE_IDX) | set(RIGHT_EYE_IDX) | set(LIPS_IDX))

# similarity(): both crops shrink to 40 px grey; the previous one's central 32 px is
# searched for the current one's central 24 px (about the face box of a 1.6x crop) at
# five scales: +-4 px of shift and +-15% of scale cover detector jitter and motion
# between samples. At scale 1 the template lies on the same pixel grid, so a repeated
# frame scores exactly 1.
_GRID, _SEARCH, _TEMPLATE = 40, 32, 24
_SCALES = (0.87, 0.93, 1.0, 1.07, 1.15)
_FLAT_STD = 1.0  # grey levels: a crop this flat has no structure to compare


class Swap(NamedTuple):
    """Whether the face changed identity, and the time of the first frame after the change."""

    detected: bool
    at_s: float | None


def _small_grey(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (_GRID, _GRID), interpolation=cv2.INTER_AREA).astype(np.float32)


def _centre(image: np.ndarray, side: int) -> np.ndarray:
    margin = (image.shape[0] - side) // 2
    return image[margin : margin + side, margin : margin + side]


def similarity(prev_crop: np.ndarray, crop: np.ndarray) -> float:
    """How alike two square face crops (RGB uint8) are, in [0, 1]: 1 the same picture.

    The best normalised cross-correlation of the current face centre against the
    previous crop over small shifts and scales; normalised correlation ignores brightness
    and contrast, so a lighting change does not lower it. A crop with no structure
    (flat) matches only another flat crop of the same brightness.

    >>> rng = np.random.default_rng(0)
    >>> face = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (128, 128))
    >>> similarity(face, face), similarity(face, np.full_like(face, 128))
    (1.0, 0.0)
    """
    if (
        prev_crop.ndim != 3
        or crop.ndim != 3
        or prev_crop.shape[0] != prev_crop.shape[1]
        or crop.shape[0] != crop.shape[1]
    ):
        raise ValueError(f"crops must be square RGB images, got shapes {prev_crop.shape} and {crop.shape}")
    prev_small, small = _small_grey(prev_crop), _small_grey(crop)
    search, centre = _centre(prev_small, _SEARCH), _centre(small, _TEMPLATE)
    flat_prev, flat = search.std() < _FLAT_STD, centre.std() < _FLAT_STD
    if flat_prev or flat:
        return 1.0 if flat_prev and flat and abs(search.mean() - centre.mean()) < _FLAT_STD else 0.0
    best = -1.0
    for scale in _SCALES:
        side = int(round(_GRID / scale))
        template = (
            centre
            if side == _GRID
            else _centre(cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR), _TEMPLATE)
        )
        best = max(best, float(cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED).max()))
    return float(np.clip(best, 0.0, 1.0))


def face_shape(landmarks: np.ndarray) -> np.ndarray:
    """The identity cue of one frame: the :data:`SHAPE_IDX` points of the (478, 3) face-mesh
    landmarks, centred and scaled to unit RMS radius, float64 (K, 3)."""
    if landmarks.ndim != 2 or landmarks.shape[0] < 468 or landmarks.shape[1] != 3:
        raise ValueError(f"landmarks must be (478, 3) face-mesh points, got shape {landmarks.shape}")
    points = landmarks[list(SHAPE_IDX)].astype(np.float64)
    points -= points.mean(axis=0)
    radius = np.sqrt((points**2).sum(axis=1).mean())
    if radius <= 0:
        raise ValueError("landmarks are all at one point")
    return points / radius


def _aligned(shape: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """``shape`` rotated and scaled to best fit ``onto`` (orthogonal Procrustes, no reflection)."""
    u, s, vt = np.linalg.svd(shape.T @ onto)
    flip = np.ones(3)
    flip[-1] = np.sign(np.linalg.det(u @ vt))
    rotation = (u * flip) @ vt
    scale = (s * flip).sum() / (shape**2).sum()
    return shape @ rotation * scale


def shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS landmark distance between two :func:`face_shape` results after the best rotation
    and scale, as a share of the face's RMS radius (0 the same shape)."""
    return float(np.sqrt(((_aligned(b, a) - a) ** 2).sum(axis=1).mean()))


def _mean_shape(shapes: list[np.ndarray]) -> np.ndarray:
    reference = shapes[len(shapes) // 2]
    mean = np.mean([_aligned(s, reference) for s in shapes], axis=0)
    mean -= mean.mean(axis=0)
    return mean / np.sqrt((mean**2).sum(axis=1).mean())


def _shape_change(before: list[np.ndarray], after: list[np.ndarray], config: SwapConfig) -> tuple[float, float]:
    """(distance of the mean shapes, that distance over the frames' scatter around their means)."""
    mean_before, mean_after = _mean_shape(before), _mean_shape(after)
    change = shape_distance(mean_before, mean_after)
    scatter = np.median(
        [shape_distance(mean_before, s) for s in before] + [shape_distance(mean_after, s) for s in after]
    )
    return change, change / max(float(scatter), config.min_shape_scatter)


def detect_swap(
    times: Sequence[float],
    similarity_prev: Sequence[float],
    shapes: Sequence[np.ndarray | None],
    config: SwapConfig | None = None,
) -> Swap:
    """Find the moment the face turns into another one.

    ``times`` are the sampled frames' times (increasing), ``similarity_prev`` their
    :func:`similarity` to the previous face crop (NaN without a face or for the first
    face), ``shapes`` their :func:`face_shape` (None without landmarks). Candidates are
    frames whose similarity falls under ``cut_similarity``, and the first shape after
    frames without one or without a similarity (continuity unknown). A candidate is a
    change of face when the shapes in the ``window_s`` after it differ from those before
    it by at least ``min_shape_change`` and ``min_shape_ratio``; of those, the clearest
    (highest ratio: the windows split cleanly at the true cut) gives the time.
    """
    config = config or SwapConfig()
    t = np.asarray(times, dtype=np.float64)
    sim = np.asarray(similarity_prev, dtype=np.float64)
    if t.ndim != 1 or sim.shape != t.shape or len(shapes) != len(t):
        raise ValueError(
            f"times, similarity_prev and shapes must have one length, got {len(t)}, {len(sim)}, {len(shapes)}"
        )
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    has_shape = np.array([s is not None for s in shapes])
    seen_before = np.concatenate([[False], np.cumsum(has_shape)[:-1] > 0])
    after_gap = np.concatenate([[False], ~has_shape[:-1]])
    unknown_continuity = has_shape & seen_before & (np.isnan(sim) | after_gap)
    best: tuple[float, float] | None = None  # (ratio, time) of the clearest change
    for k in np.flatnonzero((sim < config.cut_similarity) | unknown_continuity):
        before = [shapes[i] for i in np.flatnonzero(has_shape[:k] & (t[:k] >= t[k] - config.window_s))]
        after = [shapes[k + i] for i in np.flatnonzero(has_shape[k:] & (t[k:] < t[k] + config.window_s))]
        if min(len(before), len(after)) < config.min_window_frames:
            continue
        change, ratio = _shape_change(before, after, config)
        if change >= config.min_shape_change and ratio >= config.min_shape_ratio and (best is None or ratio > best[0]):
            best = (ratio, float(t[k]))
    return Swap(False, None) if best is None else Swap(True, best[1])


def detect_static(times: Sequence[float], similarity_prev: Sequence[float], config: StaticConfig | None = None) -> bool:
    """True when consecutive face crops stay at least ``min_similarity`` alike for
    ``min_static_s`` or longer (a frame without a face breaks the run)."""
    config = config or StaticConfig()
    t = np.asarray(times, dtype=np.float64)
    sim = np.asarray(similarity_prev, dtype=np.float64)
    if t.ndim != 1 or sim.shape != t.shape:
        raise ValueError(f"times and similarity_prev must be 1-D of one length, got shapes {t.shape} and {sim.shape}")
    start = None  # index of the frame the current unchanged run started from
    for i in range(1, len(t)):
        if sim[i] >= config.min_similarity:
            start = i - 1 if start is None else start
            if t[i] - t[start] >= config.min_static_s:
                return True
        else:
            start = None
    return False
