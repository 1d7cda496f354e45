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
from typing import Literal

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


Fit = Literal["pad", "shift"]


@dataclass(frozen=True)
class CropSpec:
    """A network's input crop, resized to ``size`` x ``size`` pixels. Model cards carry it;
    training crops record it.

    - ``fit="pad"`` (the B2's): the square of side ``scale * max(w, h)`` centred on the face
      box; what lies outside the frame is black.
    - ``fit="shift"`` (Silent-Face's): the box's width and height each times ``scale``
      (capped so the crop fits in the frame), moved back inside the frame, never padded.
    """

    size: int
    scale: float = DEFAULT_CROP_SCALE
    fit: Fit = "pad"

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 1):
            raise ValueError(f"crop size must be an integer >= 1, got {self.size!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"crop scale must be a finite number > 0, got {self.scale!r}")
        if self.fit not in ("pad", "shift"):
            raise ValueError(f"crop fit must be 'pad' or 'shift', got {self.fit!r}")

    @property
    def key(self) -> str:
        """A short name of this crop, the same for equal specs (crops are shared by name)."""
        return f"{self.fit}-{self.scale:g}-{self.size}"

    def crop(self, image: np.ndarray, box_xywh: tuple[float, float, float, float]) -> np.ndarray:
        """The crop of the face at ``box_xywh`` in ``image`` (RGB uint8)."""
        if self.fit == "shift":
            return shifted_crop(image, box_xywh, scale=self.scale, size=self.size)
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


def shifted_box(
    image_wh: tuple[int, int], box_xywh: tuple[float, float, float, float], scale: float
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, inclusive pixel corners of Silent-Face's crop of a face box.

    The box's width and height are each multiplied by ``scale``, capped so that the crop
    fits in the image, centred on the box, then shifted back inside the image.

    >>> shifted_box((640, 480), (300, 200, 100, 100), 2.7)
    (215, 115, 485, 385)
    >>> shifted_box((640, 480), (0, 0, 100, 100), 4.0)  # at the corner: shifted, not cut
    (0, 0, 400, 400)
    """
    w_img, h_img = image_wh
    x, y, w, h = box_xywh
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have positive width and height, got w={w}, h={h}")
    scale = min((h_img - 1) / h, (w_img - 1) / w, scale)
    new_w, new_h = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    x0, y0, x1, y1 = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > w_img - 1:
        x0 -= x1 - w_img + 1
        x1 = w_img - 1
    if y1 > h_img - 1:
        y0 -= y1 - h_img + 1
        y1 = h_img - 1
    return int(x0), int(y0), int(x1), int(y1)


def shifted_crop(
    image: np.ndarray, box_xywh: tuple[float, float, float, float], *, scale: float, size: int
) -> np.ndarray:
    """Silent-Face's model input: :func:`shifted_box` cut out and resized (bilinear) to ``size``."""
    x0, y0, x1, y1 = shifted_box((image.shape[1], image.shape[0]), box_xywh, scale)
    return cv2.resize(image[y0 : y1 + 1, x0 : x1 + 1], (size, size))
