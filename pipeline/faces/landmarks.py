"""Where the parts of a face are: MediaPipe face mesh landmarks, eye aspect ratio, region boxes.

One implementation for the scanner's per-frame signals (blinks, occlusion, identity shape)
and for the training side's synthetic faces and region models. Landmarks are the 478
points of face mesh with refined irises, as ``(x, y, z)`` in pixels of the image they
were found in (``z`` on the same scale as ``x``). "left" is always the person's own
left, which appears on the image's right side (MediaPipe's convention).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from pipeline.faces.crop import CropBox, extract_square
from pipeline.faces.quiet import native_stderr_muted
from pipeline.schema import REGIONS

N_LANDMARKS = 478

LEFT_EYE_IDX = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYE_IDX = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_IRIS_CENTER = 473
RIGHT_IRIS_CENTER = 468
NOSE_IDX = (1, 2, 4, 5, 19, 45, 48, 64, 94, 97, 98, 115, 195, 220, 275, 278, 294, 326, 327, 344, 440)
LIPS_IDX = (0, 17, 37, 39, 40, 61, 84, 91, 146, 181, 185, 267, 269, 270, 291, 314, 321, 375, 405, 409)
FACE_OVAL_IDX = (
    10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176,
    234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454,
)  # fmt: skip
REGION_IDX: dict[str, tuple[int, ...]] = {
    "left_eye": LEFT_EYE_IDX,
    "right_eye": RIGHT_EYE_IDX,
    "nose": NOSE_IDX,
    "mouth": LIPS_IDX,
}
assert set(REGION_IDX) == set(REGIONS)

# The six eye points of the eye aspect ratio (Soukupova & Cech 2016), in the order
# p1 (outer corner), p2, p3 (upper lid), p4 (inner corner), p5, p6 (lower lid).
EAR_IDX: dict[str, tuple[int, int, int, int, int, int]] = {
    "left": (263, 387, 385, 362, 380, 373),
    "right": (33, 160, 158, 133, 153, 144),
}

EYE_CORNERS = tuple((EAR_IDX[eye][0], EAR_IDX[eye][3]) for eye in ("left", "right"))  # (outer, inner) per eye

Eye = Literal["left", "right"]


def eye_aspect_ratio(landmarks: np.ndarray, eye: Eye) -> float:
    """EAR of one eye: mean lid opening over eye width; about 0.25-0.35 open, under 0.15 shut.

    >>> pts = np.zeros((N_LANDMARKS, 3), np.float32)
    >>> p1, p2, p3, p4, p5, p6 = EAR_IDX["right"]
    >>> pts[p1, :2], pts[p4, :2] = (0, 0), (10, 0)
    >>> pts[p2, :2], pts[p6, :2], pts[p3, :2], pts[p5, :2] = (3, -1.5), (3, 1.5), (7, -1.5), (7, 1.5)
    >>> round(eye_aspect_ratio(pts, "right"), 3)
    0.3
    """
    if eye not in EAR_IDX:
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    p1, p2, p3, p4, p5, p6 = (landmarks[i, :2].astype(np.float64) for i in EAR_IDX[eye])
    width = np.linalg.norm(p1 - p4)
    if width <= 0:
        return float("nan")
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * width))


def region_box(landmarks: np.ndarray, region: str, *, pad: float = 1.6) -> CropBox:
    """The square around a face region's landmarks, ``pad`` times their extent.

    Eyes, nose and mouth are small next to the face; the square is at least a quarter of
    the inter-ocular distance so a shut eye or a thin mouth still gets a usable crop.
    """
    if region not in REGION_IDX:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    pts = landmarks[list(REGION_IDX[region]), :2].astype(np.float64)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    eyes = np.linalg.norm(landmarks[LEFT_IRIS_CENTER, :2] - landmarks[RIGHT_IRIS_CENTER, :2])
    side = max(x1 - x0, y1 - y0, 0.25 * eyes) * pad
    side = max(int(round(side)), 1)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return CropBox(x0=int(np.floor(cx - side / 2.0 + 0.5)), y0=int(np.floor(cy - side / 2.0 + 0.5)), side=side)


def region_crops(image: np.ndarray, landmarks: np.ndarray, *, size: int, pad: float = 1.6) -> dict[str, np.ndarray]:
    """A ``size`` x ``size`` RGB crop of every region of :data:`REGIONS`, placed by the landmarks."""
    import cv2

    out = {}
    for region in REGIONS:
        square = extract_square(image, region_box(landmarks, region, pad=pad))
        interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
        out[region] = cv2.resize(square, (size, size), interpolation=interpolation)
    return out


class FaceMesh:
    """MediaPipe face mesh (refined irises) for one face per image; one instance per process.

    ``tracking=True`` follows the face from one call to the next (for consecutive frames
    of one video; call :meth:`reset` between videos); ``False`` treats every image alone.
    """

    def __init__(self, *, tracking: bool = False, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._tracking = tracking
        with native_stderr_muted():  # the graph's start-up lines (see pipeline.faces.quiet)
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not self._tracking,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # a blank: nothing tracked afterwards
        self._quiet_until_found = True

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 pixel landmarks of the face in ``image`` (RGB uint8), or None."""
        if self._quiet_until_found:  # the graph's first landmarks log a line of their own
            with native_stderr_muted():
                result = self._mesh.process(np.ascontiguousarray(image))
            self._quiet_until_found = not result.multi_face_landmarks
        else:
            result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h, p.z * w) for p in points], dtype=np.float32)

    def reset(self) -> None:
        """Forget the tracked face (a new video starts).

        A blank image loses the track, so the next image is searched afresh; closing and
        reopening the MediaPipe graph instead leaks memory with every video.
        """
        if self._tracking:
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
