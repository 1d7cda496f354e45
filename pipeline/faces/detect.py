"""Where the faces are in a frame: MediaPipe face detection, and which face is the session's.

Boxes are in pixels of the upright frame, ``(x, y, w, h)``. The full-range detector
(``model_selection=1``) is the default because KYC archives hold faces both close to the
lens and far from it; the short-range one misses faces about 80 px wide in 720p frames.
A face that fills the frame (a close-up selfie, a tight crop) is missed by both: where a
frame gives nothing, it is searched again framed by a border (``pad_retry``), where the
face fills less of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from pipeline.config import DetectConfig
from pipeline.faces.crop import CropSpec
from pipeline.faces.quiet import native_stderr_muted

FOLLOW_IOU = 0.3


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each ``(x, y, w, h)`` box in ``boxes`` (N, 4) with ``box``.

    >>> box_iou(np.array([[0, 0, 10, 10], [5, 0, 10, 10]], np.float32), np.array([0, 0, 10, 10], np.float32)).round(3)
    array([1.   , 0.333], dtype=float32)
    """
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 0] + boxes[:, 2], box[0] + box[2])
    y1 = np.minimum(boxes[:, 1] + boxes[:, 3], box[1] + box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = boxes[:, 2] * boxes[:, 3] + box[2] * box[3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, as parallel arrays: ``boxes`` (N, 4) xywh pixels, ``scores`` (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.shape != (len(self.scores), 4):
            raise ValueError(f"boxes must be (N, 4) for N={len(self.scores)} scores, got {self.boxes.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(boxes=np.zeros((0, 4), np.float32), scores=np.zeros((0,), np.float32))

    def box(self, i: int) -> tuple[float, float, float, float]:
        """Box ``i`` as a tuple of floats ``(x, y, w, h)``."""
        x, y, w, h = (float(v) for v in self.boxes[i])
        return x, y, w, h

    def counted(self, main: int | None, min_share: float) -> int:
        """How many faces are at least ``min_share`` of the main face's width: the people in
        view, without someone far behind (a face a third of the applicant's is at three times
        the distance).

        >>> Detections(np.array([[0, 0, 100, 100], [200, 0, 70, 70], [300, 0, 30, 30]], np.float32),
        ...            np.ones(3, np.float32)).counted(0, 0.4)
        2
        """
        if main is None:
            return 0
        return int(np.count_nonzero(self.boxes[:, 2] >= min_share * self.boxes[main, 2]))

    def others(self, main: int | None, *, limit: int, min_px: float) -> list[int]:
        """The faces beside the main one worth scoring, largest first, at most ``limit``: at least
        ``min_px`` wide and not the main face found twice (IoU under 0.3 with it).

        >>> Detections(np.array([[0, 0, 100, 100], [5, 0, 100, 100], [200, 0, 30, 30], [300, 0, 60, 60],
        ...                      [400, 0, 10, 10]], np.float32), np.ones(5, np.float32)).others(0, limit=2, min_px=20)
        [3, 2]
        """
        if main is None or limit < 1:
            return []
        apart = box_iou(self.boxes, self.boxes[main]) < FOLLOW_IOU
        wide = self.boxes[:, 2] >= min_px
        found = [i for i in np.flatnonzero(apart & wide).tolist() if i != main]
        return sorted(found, key=lambda i: -float(self.boxes[i, 2] * self.boxes[i, 3]))[:limit]

    def main_face(
        self, rule: Literal["largest", "confident"] = "largest", follow: tuple[float, float, float, float] | None = None
    ) -> int | None:
        """Index of the session's face: the largest box, or the most confident; None if no face.

        With ``follow`` (the previous frame's main box), the face overlapping it most is kept
        while one overlaps it (IoU >= 0.3): with several faces of about one size, the main face
        must not jump from one person to another between frames (that would look like a swap).
        """
        if len(self) == 0:
            return None
        if follow is not None and len(self) > 1:
            overlap = box_iou(self.boxes, np.asarray(follow, dtype=np.float32))
            if overlap.max() >= FOLLOW_IOU:
                return int(np.argmax(overlap))
        if rule == "largest":
            return int(np.argmax(self.boxes[:, 2] * self.boxes[:, 3]))
        if rule == "confident":
            return int(np.argmax(self.scores))
        raise ValueError(f"main face rule must be 'largest' or 'confident', got {rule!r}")


class FaceDetector:
    """MediaPipe face detection on RGB uint8 frames; one instance per process, reused per frame."""

    def __init__(
        self, *, model_selection: Literal[0, 1] = 1, min_confidence: float = 0.5, pad_retry: float = 0.5
    ) -> None:
        import mediapipe as mp

        self.pad_retry = pad_retry  # border added on each side, as a share of the frame's longer side (0: off)
        with native_stderr_muted():  # the graph's start-up lines (see pipeline.faces.quiet)
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=model_selection, min_detection_confidence=min_confidence
            )
            self._detector.process(np.zeros((64, 64, 3), np.uint8))

    @classmethod
    def from_config(cls, detect: DetectConfig) -> FaceDetector:
        """The detector the ``detect`` settings describe."""
        return cls(
            model_selection=detect.model_selection, min_confidence=detect.min_confidence, pad_retry=detect.pad_retry
        )

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image`` (H, W, 3 RGB uint8); boxes clipped to the frame. Where none is
        found, the frame framed by a grey border is searched once more."""
        found = self._detect(image, 0)
        if len(found) or not self.pad_retry:
            return found
        pad = int(round(self.pad_retry * max(image.shape[:2])))
        framed = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        return self._detect(framed, pad)

    def _detect(self, image: np.ndarray, pad: int) -> Detections:
        """Faces in ``image``, with boxes moved back by a border of ``pad`` pixels and clipped to
        the frame inside it."""
        h, w = image.shape[:2]
        result = self._detector.process(image)
        if not result.detections:
            return Detections.empty()
        boxes, scores = [], []
        inner_w, inner_h = w - 2 * pad, h - 2 * pad
        for det in result.detections:
            rb = det.location_data.relative_bounding_box
            x0, y0 = max(rb.xmin * w - pad, 0.0), max(rb.ymin * h - pad, 0.0)
            x1, y1 = min((rb.xmin + rb.width) * w - pad, inner_w), min((rb.ymin + rb.height) * h - pad, inner_h)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            boxes.append((x0, y0, x1 - x0, y1 - y0))
            scores.append(det.score[0])
        if not boxes:
            return Detections.empty()
        return Detections(boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32))

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def crop_main_face(
    image: np.ndarray,
    detections: Detections,
    spec: CropSpec,
    *,
    rule: Literal["largest", "confident"] = "largest",
    follow: tuple[float, float, float, float] | None = None,
) -> tuple[int | None, np.ndarray | None]:
    """``(index, crop)`` of the main face, cut with ``spec``: the step from detections to a
    model input that every path takes; ``(None, None)`` without a face.
    ``follow``: the previous frame's main box in a video (see :meth:`Detections.main_face`)."""
    main = detections.main_face(rule, follow)
    if main is None:
        return None, None
    return main, spec.crop(image, detections.box(main))
