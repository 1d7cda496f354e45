"""How a face box becomes the model's input crop.

One implementation, imported by both the scanner and the training side: a crop computed
differently in training and in scanning is the classic silent bug of face anti-spoofing.

The crop is a square centred on the detector's box, with side ``scale * max(w, h)``
(scale 1.6 keeps context such as screen bezels and paper edges in view). Where the square
reaches past the image border, the missing part is filled with black rather than shifted
or shrunk, so the face keeps the same position and size in the crop wherever it is in
the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_CROP_SCALE = 1.6


@dataclass(frozen=True)
class CropBox:
    """An integer square in image pixel coordinates; may extend past the image border."""

    x0: int
    y0: int
    side: int

    @property
    def x1(self) -> int:
        return self.x0 + self.side

    @property
    def y1(self) -> int:
        return self.y0 + self.side


@dataclass(frozen=True)
class CropSpec:
    """A network's input crop: the square at ``scale`` around the face box, resized to
    ``size`` x ``size`` pixels. Model cards carry it; training crops record it."""

    size: int
    scale: float = DEFAULT_CROP_SCALE

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 1):
            raise ValueError(f"crop size must be an integer >= 1, got {self.size!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"crop scale must be a finite number > 0, got {self.scale!r}")

    def crop(self, image: np.ndarray, box_xywh: tuple[float, float, float, float]) -> np.ndarray:
        """The crop of the face at ``box_xywh`` in ``image`` (RGB uint8)."""
        return crop_face(image, box_xywh, scale=self.scale, size=self.size)


def square_crop_box(box_xywh: tuple[float, float, float, float], scale: float = DEFAULT_CROP_SCALE) -> CropBox:
    """The square crop around a face box ``(x, y, w, h)`` in pixels.

    >>> square_crop_box((100, 100, 50, 40), 1.6)
    CropBox(x0=85, y0=80, side=80)
    """
    x, y, w, h = box_xywh
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have positive width and height, got w={w}, h={h}")
    if not scale > 0:
        raise ValueError(f"crop scale must be > 0, got {scale}")
    side = max(1, int(round(max(w, h) * scale)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return CropBox(x0=int(math.floor(cx - side / 2.0 + 0.5)), y0=int(math.floor(cy - side / 2.0 + 0.5)), side=side)


def extract_square(image: np.ndarray, crop: CropBox) -> np.ndarray:
    """Pixels of ``image`` (H, W, C) inside ``crop``; outside the image they are black."""
    h, w = image.shape[:2]
    out = np.zeros((crop.side, crop.side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(crop.x0, 0), max(crop.y0, 0)
    sx1, sy1 = min(crop.x1, w), min(crop.y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - crop.y0 : sy1 - crop.y0, sx0 - crop.x0 : sx1 - crop.x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_face(
    image: np.ndarray,
    box_xywh: tuple[float, float, float, float],
    *,
    scale: float = DEFAULT_CROP_SCALE,
    size: int,
) -> np.ndarray:
    """The model's input crop: square at ``scale`` around the face, resized to ``size`` x ``size``.

    ``image`` is RGB uint8 (H, W, 3); the result is RGB uint8 (size, size, 3).
    """
    square = extract_square(image, square_crop_box(box_xywh, scale))
    interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)
