"""The per-frame signals of one session and the session verdicts they lead to.

For every sampled frame with a face, the face is cropped for face mesh
(:data:`~pipeline.occlusion.MESH_CROP_SCALE` around the detector's box, tracked from frame
to frame), and the landmarks give the eye aspect ratios (blinks), the face shape (the
identity cue of swap detection) and the places of the region crops (occlusion); the
model's input crop gives the similarity to the previous face. At the end of the session
these series become ``blink_count`` / ``no_blink``, ``swap_detected`` / ``swap_at_s``,
``static`` and ``occluded_regions``.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.blinks import count_blinks, eye_aspect_ratios, no_blink
from pipeline.config import SignalsConfig
from pipeline.crop import crop_face
from pipeline.landmarks import FaceMesh
from pipeline.occlusion import MESH_CROP_SCALE, MESH_CROP_SIZE, OcclusionScorer, occluded_regions
from pipeline.schema import REGIONS
from pipeline.swap import detect_static, detect_swap, face_shape, similarity


def _value(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


class SessionSignals:
    """Collects one session's per-frame signals; :meth:`add` per sampled frame, then :meth:`finish`."""

    def __init__(self, config: SignalsConfig, mesh: FaceMesh, occlusion: OcclusionScorer | None) -> None:
        self.config = config
        self.mesh = mesh
        self.occlusion = occlusion
        mesh.reset()
        self.times: list[float] = []
        self.ear_left: list[float] = []
        self.ear_right: list[float] = []
        self.similarity_prev: list[float] = []
        self.shapes: list[np.ndarray | None] = []
        self.occlusion_scores: list[np.ndarray] = []
        self._prev_crop: np.ndarray | None = None

    def add(self, t: float, image: np.ndarray | None = None, box: tuple[float, float, float, float] | None = None, crop: np.ndarray | None = None) -> dict:
        """Signals of one sampled frame as frame columns; ``box``/``crop`` are None without a face."""
        ear_l = ear_r = sim = math.nan
        shape = None
        row: dict = {}
        if box is not None and crop is not None and image is not None:
            sim = similarity(self._prev_crop, crop) if self._prev_crop is not None else math.nan
            self._prev_crop = crop
            mesh_crop = crop_face(image, box, scale=MESH_CROP_SCALE, size=MESH_CROP_SIZE)
            landmarks = self.mesh.landmarks(mesh_crop)
            if landmarks is not None:
                ear_l, ear_r = eye_aspect_ratios(landmarks)
                shape = face_shape(landmarks)
                if self.occlusion is not None:
                    scores = self.occlusion.score_many([(mesh_crop, landmarks)])[0]
                    self.occlusion_scores.append(scores)
                    row.update({f"occlusion_{r}": float(s) for r, s in zip(REGIONS, scores)})
                    # Face mesh still places the lids of a covered eye; such an EAR would make false blinks.
                    covered = {r for r, s in zip(REGIONS, scores) if s >= self.occlusion.thresholds[r]}
                    ear_l = math.nan if "left_eye" in covered else ear_l
                    ear_r = math.nan if "right_eye" in covered else ear_r
        self.times.append(t)
        self.ear_left.append(ear_l)
        self.ear_right.append(ear_r)
        self.similarity_prev.append(sim)
        self.shapes.append(shape)
        return row | {"ear_left": _value(ear_l), "ear_right": _value(ear_r), "similarity_prev": _value(sim)}

    def finish(self) -> dict:
        """The session verdicts: ``blink_count``, ``no_blink``, ``swap_detected``, ``swap_at_s``,
        ``static`` and ``occluded_regions``; None where the session had no face to judge."""
        faces = any(s is not None for s in self.shapes)
        if not faces or len(self.times) < 2:
            return {"blink_count": None, "no_blink": False, "swap_detected": None, "swap_at_s": None, "static": None, "occluded_regions": None}
        blinks = count_blinks(self.times, self.ear_left, self.ear_right, self.config.blinks)
        swap = detect_swap(self.times, self.similarity_prev, self.shapes, self.config.swap)
        regions = None
        if self.occlusion is not None:
            scores = np.asarray(self.occlusion_scores, dtype=np.float32).reshape(-1, len(REGIONS))
            regions = occluded_regions(scores, self.occlusion.thresholds, self.config.occlusion.min_fraction)
        return {
            "blink_count": len(blinks),
            "no_blink": no_blink(self.times, self.ear_left, self.ear_right, blinks, self.config.blinks),
            "swap_detected": swap.detected,
            "swap_at_s": swap.at_s,
            "static": detect_static(self.times, self.similarity_prev, self.config.static),
            "occluded_regions": regions,
        }
