"""The per-frame signals of one session and the session verdicts they lead to.

For every sampled frame with a face, :class:`~pipeline.session.frame_path.FramePath` hands
over the scorer's crop, the face-mesh crop and its landmarks; the landmarks give the eye
aspect ratios (blinks), the face shape (the identity cue of swap detection) and the places
of the region crops (occlusion), and the scorer's crop gives the similarity to the previous
face. At the end of the session these series become the
:class:`SessionVerdicts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import SignalsConfig
from pipeline.schema import REGIONS
from pipeline.signals.blinks import (
    EyeCue,
    EyesClosing,
    count_blinks,
    eye_aspect_ratios,
    eyes_watchable,
    no_blink,
    observed_eyes_s,
)
from pipeline.signals.identity import IdentitySeries, IdentitySwap, IdentityTrack, distance_across, identity_swaps
from pipeline.signals.occlusion import OcclusionScorer, occluded_regions
from pipeline.signals.swap import detect_static, detect_swap, face_shape, similarity

_NO_OCCLUSION = np.full(len(REGIONS), np.nan, np.float32)


@dataclass(frozen=True)
class FrameSignals:
    """One frame's signal columns; NaN where not computed (no face, no landmarks, covered eye)."""

    ear_left: float = math.nan
    ear_right: float = math.nan
    similarity_prev: float = math.nan
    occlusion: np.ndarray = field(default_factory=lambda: _NO_OCCLUSION)  # (len(REGIONS),) probabilities


@dataclass(frozen=True)
class SessionVerdicts:
    """What the session signals concluded; None where a signal was not computed or the
    session had no face to judge (signals off, no face, fewer than two frames).

    ``blinks`` holds each counted blink as ``(start_s, end_s)``: the first shut and the
    first reopened sample. The report draws these, never a recount. ``swap_times_s`` holds
    every change of the main face (``swap_at_s`` is the first) and ``swap_distance`` the
    largest identity distance across one (None when identity did not decide).
    """

    blink_count: int | None = None
    blinks: tuple[tuple[float, float], ...] | None = None
    eyes_watched_s: float | None = None  # how long eyes that could show a blink were watched: what no_blink rests on
    no_blink: bool = False
    swap_detected: bool | None = None
    swap_at_s: float | None = None
    swap_times_s: tuple[float, ...] | None = None
    swap_distance: float | None = None
    static: bool | None = None
    occluded_regions: tuple[str, ...] | None = None
    too_short: bool = False  # the face was seen for less than the temporal rules need (a photo, 1 frame)
    crowded_change: bool = False  # the main face changed between people in view together (not a swap)


def _mean_readable(*values: float) -> float:
    """The mean of the values that are not NaN (NaN when none is)."""
    readable = [v for v in values if not math.isnan(v)]
    return sum(readable) / len(readable) if readable else math.nan


class SessionSignals:
    """Collects one session's per-frame signals; :meth:`add` per sampled frame, then :meth:`finish`."""

    def __init__(
        self,
        config: SignalsConfig,
        occlusion: OcclusionScorer | None,
        identity: IdentityTrack | None = None,
        identity_threshold: float = 0.6,
        shape_support_distance: float = 0.6,
    ) -> None:
        self.config = config
        self.occlusion = occlusion
        self.identity = identity
        self.identity_threshold = identity_threshold
        self.shape_support_distance = shape_support_distance
        self.identity_series: IdentitySeries | None = None  # set by finish() when identity is on
        self.times: list[float] = []
        self.ear_left: list[float] = []
        self.ear_right: list[float] = []
        self.watchable: list[bool] = []  # the eyes could show a blink (blinks.eyes_watchable, not covered)
        self.similarity_prev: list[float] = []
        self.shapes: list[np.ndarray | None] = []
        self.faces: list[int] = []  # faces detected in each frame
        self.occlusion_scores: list[np.ndarray] = []
        self._prev_crop: np.ndarray | None = None
        self._gap = False  # the previous frame had no face or no landmarks
        self._eyes = EyesClosing(EyeCue(ratio=config.blinks.open_ratio, window_s=config.blinks.baseline_s))
        self._covered: set[str] = set()  # the regions the last occlusion check found covered
        self.occlusion_checks = 0

    def add(
        self,
        t: float,
        crop: np.ndarray | None = None,
        mesh_crop: np.ndarray | None = None,
        landmarks: np.ndarray | None = None,
        *,
        image: np.ndarray | None = None,
        points: np.ndarray | None = None,
        occlude: bool = True,
        recheck: bool = False,
        faces: int = 1,
    ) -> FrameSignals:
        """Signals of one sampled frame: ``crop`` is the scorer's crop of the main face (None
        without a face), ``mesh_crop`` and ``landmarks`` the face mesh's (None without landmarks);
        ``image`` is the frame and ``points`` the landmarks in its pixels (for the identity track).
        Occlusion is checked where ``occlude`` says (its schedule), and also where ``recheck``
        says (an event), while the eyes close and when the face comes back; in between, the
        last check's covered regions hold. ``faces`` is how many faces the frame shows. Only
        the scheduled checks, spread evenly in time, make the share of frames a region is
        blocked in: checks where the eyes close would overcount the eyes."""
        ear_l = ear_r = sim = math.nan
        shape = None
        watchable = False
        scores = _NO_OCCLUSION
        after_gap = self._gap
        self._gap = crop is None or landmarks is None
        if crop is not None:
            sim = similarity(self._prev_crop, crop) if self._prev_crop is not None else math.nan
            self._prev_crop = crop
            if landmarks is not None and mesh_crop is not None:
                ear_l, ear_r = eye_aspect_ratios(landmarks)
                shape = face_shape(landmarks)
                closing = self._eyes.add(t, _mean_readable(ear_l, ear_r))
                if self.occlusion is not None and (occlude or recheck or closing or after_gap):
                    scores = self.occlusion.score_many([(mesh_crop, landmarks)])[0]
                    if occlude:
                        self.occlusion_scores.append(scores)
                    self.occlusion_checks += 1
                    self._covered = {
                        r for r, s in zip(REGIONS, scores, strict=False) if s >= self.occlusion.thresholds[r]
                    }
                covered = self._covered if self.occlusion is not None else set()
                watchable = eyes_watchable(points, self.config.blinks) and not covered & {"left_eye", "right_eye"}
                if covered:
                    # Face mesh still places the lids of a covered eye; such an EAR would make false blinks.
                    ear_l = math.nan if "left_eye" in covered else ear_l
                    ear_r = math.nan if "right_eye" in covered else ear_r
                if self.identity is not None and image is not None and points is not None:
                    cut = math.isnan(sim) or sim < self.identity.config.cut_similarity or after_gap
                    self.identity.add(t, image, points, cut=cut, covered=len(covered) >= 2)
        if self._gap and self.identity is not None:
            self.identity.gap()
        self.times.append(t)
        self.ear_left.append(ear_l)
        self.ear_right.append(ear_r)
        self.watchable.append(watchable)
        self.similarity_prev.append(sim)
        self.shapes.append(shape)
        self.faces.append(faces)
        return FrameSignals(
            ear_left=ear_l,
            ear_right=ear_r,
            similarity_prev=sim,
            occlusion=np.asarray(scores, np.float32),
        )

    def finish(self) -> SessionVerdicts:
        """The session verdicts; all None where the session had no face to judge."""
        if not any(s is not None for s in self.shapes):
            return SessionVerdicts()
        if len(self.times) < 2:  # a photo: nothing happens over time, but who it is and what covers it hold
            if self.identity is not None:
                self.identity_series = self.identity.finish()
            return SessionVerdicts(occluded_regions=self._regions(), too_short=True)
        blinks = count_blinks(self.times, self.ear_left, self.ear_right, self.config.blinks)
        watched = observed_eyes_s(self.times, self.watchable, self.config.blinks.max_gap_s)
        swaps = self._swaps()
        kept = [s for s in swaps if not self._crowded(s.at_s)]
        distances = [s.distance for s in kept if not math.isnan(s.distance)]
        regions = self._regions()
        return SessionVerdicts(
            blink_count=len(blinks),
            blinks=tuple(blinks),
            eyes_watched_s=round(watched, 3),
            no_blink=no_blink(watched, blinks, self.config.blinks),
            swap_detected=bool(kept),
            swap_at_s=kept[0].at_s if kept else None,
            swap_times_s=tuple(s.at_s for s in kept),
            swap_distance=max(distances, default=None),
            static=detect_static(self.times, self.similarity_prev, self.config.static),
            too_short=self._face_span() < self.config.static.min_static_s,
            occluded_regions=regions,
            crowded_change=len(kept) < len(swaps),
        )

    def _face_span(self) -> float:
        """Seconds from the first to the last sampled frame with a face."""
        seen = [t for t, shape in zip(self.times, self.shapes, strict=True) if shape is not None]
        return seen[-1] - seen[0] if seen else 0.0

    def _regions(self) -> tuple[str, ...] | None:
        if self.occlusion is None:
            return None
        scores = np.asarray(self.occlusion_scores, dtype=np.float32).reshape(-1, len(REGIONS))
        return tuple(occluded_regions(scores, self.occlusion.thresholds, self.config.occlusion.min_fraction))

    def _swaps(self) -> list[IdentitySwap]:
        """Every change of the main face, in time order (distance NaN where identity did not decide).

        Identity decides where embeddings lie on both sides of a candidate cut: at or over
        the threshold it is a swap. The face shape's swap counts too unless identity is sure
        it is one person there (distance under ``shape_support_distance``): low-resolution
        faces embed close together, and there the shape tells people apart. A swap needs
        identity evidence from usable frames on both sides: a shape change with no usable
        face either side (turned away, covered, too small: a fast head turn, a hand across
        the face) is no swap. Only with identity off does the face shape decide alone.
        """
        shape = detect_swap(self.times, self.similarity_prev, self.shapes, self.config.swap)
        window = self.config.swap.window_s
        swaps: list[IdentitySwap] | None = None
        if self.identity is not None:
            self.identity_series = self.identity.finish()
            swaps = identity_swaps(
                self._candidates(), self.identity_series, threshold=self.identity_threshold, window_s=window
            )
        if swaps is None:
            return [] if shape.at_s is None else [IdentitySwap(shape.at_s, math.nan)]
        if shape.at_s is not None and not any(abs(s.at_s - shape.at_s) < window for s in swaps):
            assert self.identity_series is not None
            d = distance_across(self.identity_series, shape.at_s, window)
            if d is not None and d >= self.shape_support_distance:
                swaps = sorted([*swaps, IdentitySwap(shape.at_s, d)], key=lambda s: s.at_s)
        return swaps

    def _crowded(self, at_s: float) -> bool:
        """Whether several faces were in view on both sides of a change of main face at
        ``at_s`` (in at least ``swap.crowded_share`` of each window's frames): the people were
        there together and the main face moved from one to another (a group selfie, a person
        passing behind), not one applicant replaced by another: ``crowded_change``, which
        fires ``multi_face`` however few frames show several faces."""
        share = self.config.swap.crowded_share
        if share is None:
            return False
        t, faces, window = np.asarray(self.times), np.asarray(self.faces), self.config.swap.window_s
        sides = [(t >= at_s - window) & (t < at_s), (t >= at_s) & (t < at_s + window)]
        return all(side.any() and float(np.mean(faces[side] >= 2)) >= share for side in sides)

    def _candidates(self) -> list[float]:
        """Times of the candidate cuts: a similarity drop, or a face after frames without one."""
        out = []
        had_face = after_gap = False
        for t, sim, shape in zip(self.times, self.similarity_prev, self.shapes, strict=True):
            if shape is None:
                after_gap = had_face
                continue
            if had_face and (after_gap or math.isnan(sim) or sim < self.config.swap.cut_similarity):
                out.append(t)
            had_face, after_gap = True, False
        return out
