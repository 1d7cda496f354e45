"""Drawing blocks of the synthetic scenes: backgrounds, people, printed sheets, screens, occluders.

Everything that moves in a scene is a :class:`Layer`: a premultiplied RGBA image plus
where the face sits in it, built once per scene and warped into each frame by
:func:`composite`. Building a layer may be slow (blurs on a few hundred pixels square);
drawing a frame is only warps, blends, a lookup table and added noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TypedDict

import cv2
import numpy as np

from pipeline.faces.landmarks import FACE_OVAL_IDX, REGION_IDX
from training.face_sources import FaceSource

FACE_PX = 200.0  # face size (max side of the face box) inside person and print layers
SCREEN_UPSAMPLE = 2.0  # screen layers are drawn this much finer, so their pixel grid aliases
SKIN_RGB = np.array(
    [[236, 200, 175], [224, 180, 150], [200, 150, 115], [165, 115, 85], [120, 80, 58], [90, 60, 45]],
    dtype=np.float32,
)
HAIR_RGB = np.array(
    [[20, 18, 16], [45, 32, 24], [80, 55, 35], [130, 95, 60], [190, 160, 110], [150, 150, 150]], dtype=np.float32
)
# Lower and upper lid of each eye, corner to corner (MediaPipe face mesh indices).
LOWER_LID = {
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "left_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362),
}
UPPER_LID = {
    "right_eye": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "left_eye": (263, 466, 388, 387, 386, 385, 384, 398, 362),
}
CHEEK_IDX = (50, 280)


@dataclass(frozen=True)
class Layer:
    """A premultiplied RGBA uint8 image (h, w, 4) and the face centre and size in its pixels."""

    rgba: np.ndarray
    face_center: tuple[float, float]
    face_size: float


class Wobble:
    """Smooth random signals, one per amplitude: each a sum of a few sinusoids."""

    def __init__(self, rng: np.random.Generator, amps, fmin: float = 0.1, fmax: float = 0.8, terms: int = 3):
        self.amps = np.asarray(amps, dtype=np.float64)
        n = len(self.amps)
        self.freq = rng.uniform(fmin, fmax, (n, terms))
        self.phase = rng.uniform(0.0, 2 * np.pi, (n, terms))
        weight = rng.uniform(0.3, 1.0, (n, terms))
        self.weight = weight / weight.sum(axis=1, keepdims=True)

    def __call__(self, t: float) -> np.ndarray:
        return self.amps * (self.weight * np.sin(2 * np.pi * self.freq * t + self.phase)).sum(axis=1)


# --------------------------------------------------------------------------- compositing


def plane_homography(
    layer: Layer, *, center: tuple[float, float], size: float, roll: float, yaw: float, pitch: float, focal: float
) -> np.ndarray:
    """3x3 map from layer pixels to frame pixels for a flat layer seen by a pinhole camera.

    The layer's face lands at ``center`` with face size ``size`` pixels when the plane
    faces the camera; ``roll``/``yaw``/``pitch`` (radians) tilt the plane about its face centre.
    """
    k = size / layer.face_size
    ax, ay = layer.face_center
    to_plane = np.array([[k, 0.0, -k * ax], [0.0, k, -k * ay], [0.0, 0.0, 1.0]])
    cr, sr, cy_, sy_, cp, sp = (
        math.cos(roll),
        math.sin(roll),
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
    )
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rot = rz @ ry @ rx
    extrinsic = np.column_stack([rot[:, 0], rot[:, 1], [0.0, 0.0, focal]])
    intrinsic = np.array([[focal, 0.0, center[0]], [0.0, focal, center[1]], [0.0, 0.0, 1.0]])
    matrix = intrinsic @ extrinsic @ to_plane
    return matrix / matrix[2, 2]


def composite(frame: np.ndarray, layer: Layer, matrix: np.ndarray, shade: Wobble | None = None, t: float = 0.0) -> None:
    """Warp ``layer`` by the 3x3 ``matrix`` and blend it over ``frame`` (uint8 RGB) in place.

    Only the frame rectangle the layer lands on is touched. ``shade`` gives a side light:
    a left-to-right brightness ramp of slope ``shade(t)[0]`` per face size.
    """
    fh, fw = frame.shape[:2]
    lh, lw = layer.rgba.shape[:2]
    corners = np.array([[[0, 0], [lw, 0], [lw, lh], [0, lh]]], dtype=np.float64)
    pts = cv2.perspectiveTransform(corners, matrix)[0]
    x0, y0 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
    x1, y1 = min(int(pts[:, 0].max()) + 2, fw), min(int(pts[:, 1].max()) + 2, fh)
    if x1 <= x0 or y1 <= y0:
        return
    shifted = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ matrix
    size = (x1 - x0, y1 - y0)
    if np.allclose(shifted[2], (0.0, 0.0, 1.0)):
        warped = cv2.warpAffine(layer.rgba, shifted[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        warped = cv2.warpPerspective(layer.rgba, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    roi = frame[y0:y1, x0:x1]
    fg = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
    if shade is not None:
        center_x = pts.mean(axis=0)[0] - x0
        face_px = abs(np.linalg.det(matrix[:2, :2])) ** 0.5 * layer.face_size
        ramp = 128.0 * (1.0 + shade(t)[0] * (np.arange(size[0], dtype=np.float32) - center_x) / face_px)
        ramp = np.clip(ramp, 0, 255).astype(np.uint8)[None, :]
        ramp = cv2.cvtColor(cv2.resize(ramp, size, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2RGB)
        fg = cv2.multiply(fg, ramp, scale=1.0 / 128.0)
    keep = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
    cv2.add(cv2.multiply(roi, keep, scale=1.0 / 255.0), fg, dst=roi)


@functools.lru_cache(maxsize=8)
def _noise_bank(sigma: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed Gaussian noise frames as (positive part, negative part), uint8 (2, side, side, 3)."""
    noise = np.random.default_rng(12345).normal(0.0, sigma, (2, side, side, 3))
    noise = np.clip(np.rint(noise), -255, 255).astype(np.int16)
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


NOISE_SIGMAS = (1.5, 3.0, 5.0)


def add_sensor_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Add Gaussian noise (one of :data:`NOISE_SIGMAS`) to ``frame`` in place, from a cached bank."""
    h, w = frame.shape[:2]
    side = 64 * (max(h, w) // 64 + 2)
    pos, neg = _noise_bank(sigma, side)
    k = int(rng.integers(2))
    oy, ox = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    cv2.add(frame, pos[k, oy : oy + h, ox : ox + w], dst=frame)
    cv2.subtract(frame, neg[k, oy : oy + h, ox : ox + w], dst=frame)


def lighting_lut(gain_rgb: np.ndarray, gamma: float) -> np.ndarray:
    """A (1, 256, 3) uint8 lookup table: per-channel gain after a gamma curve."""
    x = np.arange(256, dtype=np.float32) / 255.0
    y = (x[:, None] ** gamma) * np.asarray(gain_rgb, dtype=np.float32)[None, :] * 255.0
    return np.clip(y, 0, 255).astype(np.uint8)[None]


# --------------------------------------------------------------------------- backgrounds


def _random_colour(rng: np.random.Generator, lo: float = 40, hi: float = 220, sat: float = 0.35) -> np.ndarray:
    grey = rng.uniform(lo, hi)
    return np.clip(grey * (1.0 + rng.uniform(-sat, sat, 3)), 0, 255).astype(np.float32)


def _low_freq_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    grid = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random backdrop (room, texture or gradient with objects), RGB uint8 (h, w, 3).

    Drawn at half resolution and upscaled: a backdrop is out of focus anyway.
    """
    full = (w, h)
    w, h = (w + 1) // 2, (h + 1) // 2
    style = rng.choice(["room", "texture", "gradient"], p=[0.5, 0.25, 0.25])
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    if style == "texture":
        img: np.ndarray = np.zeros((h, w, 3), np.float32)
        for cell, weight in ((rng.integers(48, 160), 0.7), (rng.integers(8, 24), 0.3)):
            img += weight * _low_freq_noise(rng, h, w, int(cell))[..., None]
        a, b = _random_colour(rng), _random_colour(rng)
        img = a + (b - a) * img
    else:
        a, b = _random_colour(rng, 60, 230), _random_colour(rng, 30, 200)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (xx * math.cos(angle) + yy * math.sin(angle) + 1.0) / 2.0
        img = a + (b - a) * ramp
        if style == "room":
            floor_y = int(h * rng.uniform(0.7, 0.95))
            img[floor_y:] = _random_colour(rng, 40, 160) * (0.8 + 0.2 * yy[floor_y:] / yy[-1])
        img = np.ascontiguousarray(img)
        n_objects = rng.integers(2, 7) if style == "room" else rng.integers(0, 4)
        for _ in range(n_objects):
            _draw_object(img, rng)
        img += 12.0 * (_low_freq_noise(rng, h, w, 24)[..., None] - 0.5)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.5))
    return cv2.resize(np.clip(img, 0, 255).astype(np.uint8), full, interpolation=cv2.INTER_LINEAR)


def _draw_object(img: np.ndarray, rng: np.random.Generator) -> None:
    """A window, door, picture frame, shelf or lamp at a random place, drawn in place."""
    h, w = img.shape[:2]
    kind = rng.choice(["window", "door", "frame", "shelf", "lamp"])
    x0, y0 = int(rng.uniform(-0.1, 0.9) * w), int(rng.uniform(-0.1, 0.7) * h)
    bw, bh = int(rng.uniform(0.08, 0.35) * w), int(rng.uniform(0.1, 0.5) * h)
    colour = _random_colour(rng).tolist()
    if kind == "window":
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), _random_colour(rng, 200, 255, 0.1).tolist(), -1)
        frame_colour = _random_colour(rng, 30, 240, 0.1).tolist()
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), frame_colour, max(2, bw // 25))
        cv2.line(img, (x0 + bw // 2, y0), (x0 + bw // 2, y0 + bh), frame_colour, max(2, bw // 30))
    elif kind == "door":
        cv2.rectangle(img, (x0, y0), (x0 + bw // 2, h), colour, -1)
        cv2.circle(img, (x0 + bw // 2 - bw // 10, y0 + (h - y0) // 2), max(2, bw // 30), (200, 190, 120), -1)
    elif kind == "frame":
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), colour, -1)
        inner = (x0 + bw // 8, y0 + bh // 8), (x0 + bw - bw // 8, y0 + bh - bh // 8)
        cv2.rectangle(img, *inner, _random_colour(rng, 20, 240, 0.6).tolist(), -1)
        for _ in range(3):
            centre = (int(rng.uniform(inner[0][0], inner[1][0])), int(rng.uniform(inner[0][1], inner[1][1])))
            cv2.circle(img, centre, max(2, bw // 8), _random_colour(rng, 20, 240, 0.6).tolist(), -1)
    elif kind == "shelf":
        cv2.rectangle(img, (x0, y0), (x0 + bw * 2, y0 + max(4, bh // 12)), colour, -1)
        for i in range(rng.integers(2, 8)):
            bx = x0 + int(i * bw / 4)
            cv2.rectangle(
                img, (bx, y0 - int(bh * rng.uniform(0.2, 0.5))), (bx + bw // 6, y0), _random_colour(rng).tolist(), -1
            )
    else:
        cv2.circle(img, (x0, y0), max(4, bw // 4), _random_colour(rng, 220, 255, 0.15).tolist(), -1, cv2.LINE_AA)


# --------------------------------------------------------------------------- shapes


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Feather ``mask`` in place with a Gaussian of ``sigma`` px, blurring only around its shape."""
    if sigma <= 0:
        return mask
    sigma = max(sigma, 0.5)
    x, y, w, h = cv2.boundingRect((mask > 0).view(np.uint8))
    if w == 0 or h == 0:
        return mask
    r = int(3 * sigma) + 1
    rows = slice(max(y - r, 0), min(y + h + r, mask.shape[0]))
    cols = slice(max(x - r, 0), min(x + w + r, mask.shape[1]))
    mask[rows, cols] = cv2.GaussianBlur(mask[rows, cols], (0, 0), sigma)
    return mask


def _paint(rgb: np.ndarray, alpha: np.ndarray | None, mask: np.ndarray, colour) -> None:
    """Paint ``colour`` (a colour, or an image broadcastable to ``rgb``) with coverage ``mask``, in place.

    Only the bounding box of the mask is touched; ``alpha`` (if given) becomes the union.
    """
    x, y, w, h = cv2.boundingRect((mask > 1e-3).view(np.uint8))
    if w == 0 or h == 0:
        return
    rows, cols = slice(y, y + h), slice(x, x + w)
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 3:
        colour = colour[rows if colour.shape[0] > 1 else slice(None), cols if colour.shape[1] > 1 else slice(None)]
    m = mask[rows, cols, None]
    patch = rgb[rows, cols]
    patch += m * (colour - patch)
    if alpha is not None:
        np.maximum(alpha[rows, cols], mask[rows, cols], out=alpha[rows, cols])


def _ellipse_mask(shape, center, axes, angle: float = 0.0, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.ellipse(
        mask,
        (int(center[0]), int(center[1])),
        (max(int(axes[0]), 1), max(int(axes[1]), 1)),
        angle,
        0,
        360,
        (1.0,),
        -1,
        cv2.LINE_AA,
    )
    return _soft(mask, sigma)


def _capsule_mask(shape, p0, p1, width: float, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.line(mask, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), (1.0,), max(int(width), 1), cv2.LINE_AA)
    return _soft(mask, sigma)


def _poly_mask(shape, points, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], (1.0,), cv2.LINE_AA)
    return _soft(mask, sigma)


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    return SKIN_RGB[rng.integers(len(SKIN_RGB))] * rng.uniform(0.9, 1.08, 3).astype(np.float32)


def _draw_hand(rgb, alpha, rng, palm_center, palm_axes, finger_dir, finger_len, finger_w, arm_to, skin) -> None:
    """A hand: forearm from ``arm_to`` to the palm, palm ellipse, four fingers along ``finger_dir``."""
    sigma = finger_w * 0.12
    _paint(rgb, alpha, _capsule_mask(rgb.shape, arm_to, palm_center, palm_axes[1] * 1.4, sigma), skin * 0.92)
    angle = math.degrees(math.atan2(finger_dir[1], finger_dir[0]))
    _paint(rgb, alpha, _ellipse_mask(rgb.shape, palm_center, palm_axes, angle, sigma), skin)
    fx, fy = finger_dir
    nx, ny = -fy, fx
    for j, length in enumerate((0.8, 1.0, 0.95, 0.75)):
        off = (j - 1.5) * finger_w * 1.05
        base = (
            palm_center[0] + nx * off + fx * palm_axes[0] * 0.6,
            palm_center[1] + ny * off + fy * palm_axes[0] * 0.6,
        )
        tip = (base[0] + fx * finger_len * length, base[1] + fy * finger_len * length)
        _paint(rgb, alpha, _capsule_mask(rgb.shape, base, tip, finger_w, sigma), skin * rng.uniform(0.95, 1.05))
        gap = _capsule_mask(rgb.shape, base, tip, max(finger_w * 0.08, 1), 0)
        _paint(rgb, None, 0.25 * gap, 0.0)


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class FaceGeometry:
    """Face landmarks of a source moved into layer pixels."""

    landmarks: np.ndarray
    centers: dict[str, tuple[float, float]]
    eye_distance: float


def _normalised_crop(src: FaceSource, left: float, top: float, right: float, bottom: float):
    """The source photo around its face, scaled to face size :data:`FACE_PX` (border replicated).

    Extents are in face sizes from the face centre. Returns the float32 image and the
    landmarks moved into it.
    """
    x, y, w, h = src.box
    s = max(w, h)
    k = FACE_PX / s
    cx, cy = x + w / 2, y + h / 2
    out_w, out_h = int(round((left + right) * FACE_PX)), int(round((top + bottom) * FACE_PX))
    shift = np.array([[k, 0.0, -k * (cx - left * s)], [0.0, k, -k * (cy - top * s)]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    img = cv2.warpAffine(src.image, shift, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    lm = src.landmarks * k + shift[:, 2]
    centers = {r: (c[0] * k + shift[0, 2], c[1] * k + shift[1, 2]) for r, c in src.centers.items()}
    return img.astype(np.float32), FaceGeometry(lm, centers, src.eye_distance * k)


def _skin_colour(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    r = 4
    patches = [img[int(y) - r : int(y) + r, int(x) - r : int(x) + r].reshape(-1, 3) for x, y in lm[list(CHEEK_IDX)]]
    return np.median(np.concatenate(patches), axis=0).astype(np.float32)


def close_eyes(rgb: np.ndarray, geo: FaceGeometry, skin: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with both eyes shut: each eye opening painted as eyelid skin, with a
    dark lash line just below the eye's middle and a soft crease above it."""
    out = rgb.copy()
    d = geo.eye_distance
    for region in ("left_eye", "right_eye"):
        pts = geo.landmarks[list(REGION_IDX[region])]
        centre = pts.mean(axis=0)
        hull = cv2.convexHull(((pts - centre) * 1.35 + centre).astype(np.float32))[:, 0]
        _paint(out, None, _poly_mask(out.shape, hull, d / 40), skin * 0.88)
        for lid, shape, width, colour, strength in (
            (LOWER_LID[region], (1.05, 0.35), d / 14, skin * 0.15, 0.9),  # lashes
            (UPPER_LID[region], (0.9, 1.6), d / 18, skin * 0.65, 0.5),  # crease
        ):
            line = centre + (geo.landmarks[list(lid)] - centre) * np.array(shape)
            mask = np.zeros(out.shape[:2], np.float32)
            cv2.polylines(
                mask, [np.round(line).astype(np.int32)], False, (1.0,), max(1, int(round(width))), cv2.LINE_AA
            )
            _paint(out, None, strength * _soft(mask, width / 4), colour)
    return out


def _finish(rgb: np.ndarray, alpha: np.ndarray, face_center, face_size: float) -> Layer:
    rgba = np.empty(rgb.shape[:2] + (4,), np.uint8)
    np.multiply(rgb, alpha[..., None], out=rgb)  # premultiply; the caller's canvas is spent
    rgba[..., :3] = np.clip(rgb, 0, 255, out=rgb)
    rgba[..., 3] = np.clip(alpha * 255.0, 0, 255)
    return Layer(rgba, (float(face_center[0]), float(face_center[1])), float(face_size))


# Layer extents around the face centre, in face sizes: left, top, right, bottom.
PERSON_EXTENT = (1.35, 1.05, 1.35, 2.6)


def _person_canvas(src: FaceSource, rng: np.random.Generator):
    """Torso, neck and hair drawn behind where the head goes, plus what the head needs.

    Returns (rgb, alpha, head mask, normalised photo, geometry, skin colour).
    """
    img, geo = _normalised_crop(src, *PERSON_EXTENT)
    h, w = img.shape[:2]
    cx, cy = PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX
    s = FACE_PX
    skin = _skin_colour(img, geo.landmarks)
    rgb = np.zeros_like(img)
    alpha = np.zeros((h, w), np.float32)
    shirt = _random_colour(rng, 20, 230, 0.6)
    shoulders = (cx + rng.uniform(-0.1, 0.1) * s, cy + 1.5 * s)
    half_width = rng.uniform(1.0, 1.3) * s
    torso = np.zeros((h, w), np.float32)
    cv2.ellipse(
        torso,
        (int(shoulders[0]), int(shoulders[1])),
        (int(half_width), int(0.8 * s)),
        0,
        180,
        360,
        (1.0,),
        -1,
        cv2.LINE_AA,
    )
    cv2.rectangle(
        torso, (int(shoulders[0] - half_width), int(shoulders[1])), (int(shoulders[0] + half_width), h), (1.0,), -1
    )
    shading = np.linspace(1.08, 0.85, h, dtype=np.float32)[:, None, None]
    _paint(rgb, alpha, _soft(torso, 3), shirt * shading)
    neck = [(cx - 0.22 * s, cy), (cx + 0.22 * s, cy), (cx + 0.25 * s, cy + 0.95 * s), (cx - 0.25 * s, cy + 0.95 * s)]
    _paint(rgb, alpha, _poly_mask(img.shape, neck, 3), skin * 0.8)
    hair = HAIR_RGB[rng.integers(len(HAIR_RGB))] * rng.uniform(0.8, 1.15)
    _paint(rgb, alpha, _ellipse_mask(img.shape, (cx, cy - 0.18 * s), (0.6 * s, 0.56 * s), 0, 4), hair)
    (ex, ey), (ea, eb), eangle = cv2.fitEllipse(geo.landmarks[list(FACE_OVAL_IDX)].astype(np.float32))
    head = _ellipse_mask(img.shape, (ex, ey - 0.05 * s), (ea * 0.56, eb * 0.58), eangle, 0.035 * s)
    return rgb, alpha, head, img, geo, skin


def person_layers(src: FaceSource, rng: np.random.Generator, occluded: tuple[str, ...] = ()) -> tuple[Layer, Layer]:
    """A head-and-shoulders person cut from ``src``: (eyes open, eyes shut) layers.

    Occluders cover exactly the ``occluded`` regions and move with the head.
    """
    base, alpha, head, img, geo, skin = _person_canvas(src, rng)
    shut, shut_alpha = base.copy(), alpha.copy()
    _paint(base, alpha, head, img)
    _paint(shut, shut_alpha, head, close_eyes(img, geo, skin))
    if occluded:
        plan = occluder_plan(occluded, rng)
        draw_seed = int(rng.integers(2**31))
        for layer_rgb, layer_alpha in ((base, alpha), (shut, shut_alpha)):
            draw_occluders(layer_rgb, layer_alpha, geo, plan, np.random.default_rng(draw_seed))
    centre = (PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX)
    return _finish(base, alpha, centre, FACE_PX), _finish(shut, shut_alpha, centre, FACE_PX)


def portrait(src: FaceSource, rng: np.random.Generator, margin: np.ndarray) -> np.ndarray:
    """A head-and-shoulders photo of ``src`` on a random backdrop, as shown by a print or a
    screen: float32 RGB cropped to the face box plus ``margin`` (face sizes: left, top, right, bottom)."""
    rgb, alpha, head, img, _, _ = _person_canvas(src, rng)
    _paint(rgb, alpha, head, img)
    h, w = alpha.shape
    backdrop = background(rng, w, h).astype(np.float32)
    rgb += (1.0 - alpha[..., None]) * backdrop
    cx, cy = PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX
    x0, y0 = int(round(cx - (0.5 + margin[0]) * FACE_PX)), int(round(cy - (0.5 + margin[1]) * FACE_PX))
    x1, y1 = int(round(cx + (0.5 + margin[2]) * FACE_PX)), int(round(cy + (0.5 + margin[3]) * FACE_PX))
    return rgb[y0:y1, x0:x1]


# --------------------------------------------------------------------------- occluders


def occluder_plan(regions: tuple[str, ...], rng: np.random.Generator) -> list[tuple[str, tuple[str, ...]]]:
    """Which occluder covers which regions: [(style, regions)]."""
    left = set(regions)
    plan: list[tuple[str, tuple[str, ...]]] = []
    if {"left_eye", "right_eye"} <= left and rng.random() < 0.6:
        plan.append(("sunglasses", ("left_eye", "right_eye")))
        left -= {"left_eye", "right_eye"}
    if {"nose", "mouth"} <= left and rng.random() < 0.7:
        plan.append(("mask", ("nose", "mouth")))
        left -= {"nose", "mouth"}
    styles = {
        "left_eye": ["hand", "patch", "card"],
        "right_eye": ["hand", "patch", "card"],
        "nose": ["hand", "card"],
        "mouth": ["mask", "hand", "card"],
    }
    for region in sorted(left):
        plan.append((str(rng.choice(styles[region])), (region,)))
    return plan


def draw_occluders(rgb, alpha, geo: FaceGeometry, plan, rng: np.random.Generator) -> None:
    """Draw each planned occluder over its regions (sized by the eye distance), in place."""
    d = geo.eye_distance
    c = {k: np.array(v) for k, v in geo.centers.items()}
    face_mid_x = (c["left_eye"][0] + c["right_eye"][0]) / 2
    skin = _skin_tone(rng)
    for style, regions in plan:
        sigma = d * 0.02
        if style == "sunglasses":
            frame_col = _random_colour(rng, 5, 60, 0.2)
            for eye in ("left_eye", "right_eye"):
                centre, (hw, hh) = _region_box(geo, eye)
                lens = (max(0.36 * d, hw + 0.08 * d), max(0.27 * d, hh + 0.1 * d))
                _paint(rgb, alpha, _ellipse_mask(rgb.shape, centre, lens, 0, sigma), frame_col * 0.6 + np.float32(8))
                outward = 1.0 if c[eye][0] > face_mid_x else -1.0
                _paint(
                    rgb,
                    alpha,
                    _capsule_mask(
                        rgb.shape,
                        c[eye] + (outward * 0.34 * d, -0.05 * d),
                        c[eye] + (outward * 0.75 * d, -0.1 * d),
                        0.06 * d,
                        sigma,
                    ),
                    frame_col,
                )
            _paint(
                rgb,
                alpha,
                _capsule_mask(
                    rgb.shape,
                    c["right_eye"] + (0.3 * d, -0.08 * d),
                    c["left_eye"] - (0.3 * d, 0.08 * d),
                    0.07 * d,
                    sigma,
                ),
                frame_col,
            )
            # a glint on each lens
            for eye in ("left_eye", "right_eye"):
                glint = _ellipse_mask(rgb.shape, c[eye] + (-0.12 * d, -0.1 * d), (0.1 * d, 0.04 * d), -25, sigma * 2)
                _paint(rgb, None, 0.3 * glint, 255.0)
        elif style == "mask":
            colour = rng.choice([[200, 220, 235], [235, 235, 235], [60, 60, 70], [120, 170, 210]]).astype(np.float32)
            if "nose" in regions:
                top = max(c["nose"][1] - 0.35 * d, max(c["left_eye"][1], c["right_eye"][1]) + 0.22 * d)
            else:
                top = c["mouth"][1] - 0.22 * d
            bottom = c["mouth"][1] + 0.75 * d
            mx = c["mouth"][0]
            poly = [
                (mx - 0.55 * d, top),
                (mx + 0.55 * d, top),
                (mx + 0.8 * d, top + 0.35 * d),
                (mx + 0.55 * d, bottom),
                (mx - 0.55 * d, bottom),
                (mx - 0.8 * d, top + 0.35 * d),
            ]
            pleats = np.ones(rgb.shape[:2], np.float32)
            for j in range(1, 4):
                y = int(top + j * (bottom - top) / 4)
                cv2.line(
                    pleats, (int(mx - 0.7 * d), y), (int(mx + 0.7 * d), y), (0.85,), max(1, int(d / 40)), cv2.LINE_AA
                )
            _paint(rgb, alpha, _poly_mask(rgb.shape, poly, sigma), colour * pleats[..., None])
            for side in (-1, 1):
                _paint(
                    rgb,
                    alpha,
                    _capsule_mask(
                        rgb.shape,
                        (mx + side * 0.78 * d, top + 0.3 * d),
                        (mx + side * 1.2 * d, top - 0.1 * d),
                        0.03 * d,
                        sigma,
                    ),
                    colour * 0.9,
                )
        elif style == "patch":
            (eye,) = regions
            outward = 1.0 if c[eye][0] > face_mid_x else -1.0
            centre, (hw, hh) = _region_box(geo, eye)
            patch = (max(0.33 * d, hw + 0.08 * d), max(0.25 * d, hh + 0.1 * d))
            _paint(rgb, alpha, _ellipse_mask(rgb.shape, centre, patch, 0, sigma), np.array([25, 22, 20], np.float32))
            _paint(
                rgb,
                alpha,
                _capsule_mask(rgb.shape, c[eye], c[eye] + (outward * 0.9 * d, -0.45 * d), 0.05 * d, sigma),
                np.array([20, 18, 16], np.float32),
            )
        elif style == "card":
            (region,) = regions
            centre, (hw, hh) = _region_box(geo, region)
            half = (max(hw + 0.07 * d, 0.3 * d), hh + 0.07 * d)
            box = [centre + (sx * half[0], sy * half[1]) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            _paint(rgb, alpha, _poly_mask(rgb.shape, box, sigma), _random_colour(rng, 30, 240, 0.6))
        else:  # hand
            (region,) = regions
            outward = 1.0 if c[region][0] > face_mid_x else -1.0
            if region == "nose":
                # fingers laid across the nose from the side, stacked to cover its height
                centre, (hw, hh) = _region_box(geo, "nose")
                finger_w = (2 * hh + 0.08 * d) / 4.2
                palm = centre + (outward * (hw + 0.55 * d), 0.0)
                arm_to = centre + (outward * 2.4 * d, 0.4 * d)
                _draw_hand(
                    rgb,
                    alpha,
                    rng,
                    palm,
                    (0.25 * d, 2.2 * finger_w),
                    (-outward, 0.0),
                    2 * hw + 0.6 * d,
                    finger_w,
                    arm_to,
                    skin,
                )
            elif region == "mouth":
                outward = float(rng.choice([-1.0, 1.0]))
                arm_to = c[region] + (outward * 1.4 * d, 1.8 * d)
                _draw_hand(
                    rgb, alpha, rng, c[region], (0.55 * d, 0.3 * d), (-outward, -0.1), 0.5 * d, 0.11 * d, arm_to, skin
                )
            else:
                arm_to = c[region] + (outward * 2.0 * d, 0.1 * d)
                _draw_hand(
                    rgb,
                    alpha,
                    rng,
                    c[region],
                    (0.36 * d, 0.26 * d),
                    (-0.5 * outward, -0.85),
                    0.5 * d,
                    0.11 * d,
                    arm_to,
                    skin,
                )


def _region_box(geo: FaceGeometry, region: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Centre and half-size (x, y) of the bounding box of a region's landmarks."""
    pts = geo.landmarks[list(REGION_IDX[region])]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2, tuple((hi - lo) / 2)


# --------------------------------------------------------------------------- print and replay

Range = tuple[float, float]  # (low, high)


class PrintRanges(TypedDict):
    """The ranges of :data:`PRINT`."""

    margin: tuple[Range, Range, Range, Range]
    border: Range
    black: Range
    white: Range
    saturation: Range
    blur: Range
    halftone: Range


class ReplayRanges(TypedDict):
    """The ranges of :data:`REPLAY`."""

    margin: tuple[Range, Range, Range, Range]
    gamma: Range
    grid: Range
    moire: Range
    moire_period: Range
    glare: Range
    bezel: Range
    blur: Range


# Ranges (low, high) of the print and screen artefacts. Margins (photo shown beyond the
# face box) and borders are in face sizes: small enough at the sides that the paper or
# bezel edges lie inside a 1.6x crop of the face box; larger at the bottom and often at
# the top, because face detection on these low-resolution faces needs the head outline.
PHOTO_MARGIN = ((0.04, 0.14), (0.08, 0.4), (0.04, 0.14), (0.3, 0.6))  # left, top, right, bottom
# A close-up: the photo reaches past the 1.6x crop on every side (the sheet or screen fills
# the view, as in real attacks held near the camera), so only the print's or the screen's
# texture, contrast and colour tell it from a face.
CLOSE_UP_MARGIN = ((0.4, 0.8), (0.4, 0.55), (0.4, 0.8), (0.6, 1.2))
CLOSE_UP_FRACTION = 0.35
PRINT: PrintRanges = {
    "margin": PHOTO_MARGIN,
    "border": (0.03, 0.07),
    "black": (10.0, 30.0),
    "white": (210.0, 245.0),
    "saturation": (0.7, 1.0),
    "blur": (0.7, 1.6),
    "halftone": (0.05, 0.12),
}
REPLAY: ReplayRanges = {
    "margin": PHOTO_MARGIN,
    "gamma": (0.7, 1.3),
    "grid": (0.08, 0.18),
    "moire": (0.03, 0.06),
    "moire_period": (20.0, 50.0),
    "glare": (20.0, 80.0),
    "bezel": (0.03, 0.09),
    "blur": (0.4, 0.7),
}


def _photo_margin(rng: np.random.Generator, ranges: tuple[Range, Range, Range, Range]) -> np.ndarray:
    """How much of the photo shows beyond the face box (face sizes): usually ``ranges``, so the
    edge is in the crop; a :data:`CLOSE_UP_FRACTION` of the time a close-up."""
    chosen = CLOSE_UP_MARGIN if rng.random() < CLOSE_UP_FRACTION else ranges
    return np.array([rng.uniform(*r) for r in chosen])


def _fingers_on_edges(rgb, alpha, rng, sheet_box, s: float) -> None:
    """One or two thumbs gripping the sheet edges (left, right or bottom), hand outside the sheet."""
    x0, y0, x1, y1 = sheet_box
    skin = _skin_tone(rng)
    sides = rng.choice(["left", "right", "bottom"], size=rng.integers(1, 3), replace=False)
    for side in sides:
        f = rng.uniform(0.25, 0.85)
        width = rng.uniform(0.12, 0.17) * s
        reach = rng.uniform(0.08, 0.15) * s
        if side == "bottom":
            edge = np.array([x0 + f * (x1 - x0), y1])
            inward = np.array([0.0, -1.0])
        else:
            edge = np.array([x0 if side == "left" else x1, y0 + f * (y1 - y0)])
            inward = np.array([1.0, 0.0]) if side == "left" else np.array([-1.0, 0.0])
        along = np.array([-inward[1], inward[0]])
        tilt = along * rng.uniform(-0.5, 0.5)
        tip = edge + (inward + tilt) * reach
        palm_center = edge - inward * 0.2 * s + along * rng.uniform(-0.1, 0.1) * s
        palm_angle = math.degrees(math.atan2(along[1], along[0]))
        _paint(rgb, alpha, _ellipse_mask(rgb.shape, palm_center, (0.3 * s, 0.22 * s), palm_angle, 1.5), skin * 0.85)
        _paint(rgb, alpha, _capsule_mask(rgb.shape, edge - inward * 0.12 * s, tip, width, 1.0), skin)
        nail = _ellipse_mask(
            rgb.shape, tip - (inward + tilt) * width * 0.15, (width * 0.28, width * 0.22), palm_angle, 1.0
        )
        _paint(rgb, None, 0.25 * nail, np.array([250, 225, 215], np.float32))


def print_layer(src: FaceSource, rng: np.random.Generator) -> Layer:
    """The photo printed on paper and held by hand: halftone, paper texture, flat range, blur,
    a white paper border whose edge falls inside a 1.6x face crop (but for a close-up), and
    thumbs on the edges."""
    margin = _photo_margin(rng, PRINT["margin"])
    border = rng.uniform(*PRINT["border"], 4)  # white paper around the photo
    photo = portrait(src, rng, margin)
    ph, pw = photo.shape[:2]
    lo, hi = rng.uniform(*PRINT["black"]), rng.uniform(*PRINT["white"])
    grey = photo.mean(axis=2, keepdims=True)
    photo = grey + rng.uniform(*PRINT["saturation"]) * (photo - grey)
    photo = lo + (hi - lo) * photo / 255.0
    photo *= rng.uniform(0.92, 1.06, 3).astype(np.float32)
    photo = cv2.GaussianBlur(photo, (0, 0), rng.uniform(*PRINT["blur"]))
    period, angle = rng.uniform(2.5, 4.5), rng.uniform(0, np.pi / 2)
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * np.pi / period)
    v = (-xx * math.sin(angle) + yy * math.cos(angle)) * (2 * np.pi / period)
    dots = 0.5 + 0.5 * np.cos(u) * np.cos(v)
    np.multiply(photo, (1.0 - rng.uniform(*PRINT["halftone"]) * dots)[..., None], out=photo)

    bl, bt, br, bb = (border * FACE_PX).astype(int)
    paper = np.float32(rng.uniform(225, 252)) * rng.uniform(0.96, 1.02, 3).astype(np.float32)
    sheet_h, sheet_w = ph + bt + bb, pw + bl + br
    sheet = np.empty((sheet_h, sheet_w, 3), np.float32)
    sheet[:] = paper
    sheet[bt : bt + ph, bl : bl + pw] = photo
    sheet += 6.0 * (_low_freq_noise(rng, sheet_h, sheet_w, 40)[..., None] - 0.5)
    sheet += rng.normal(0.0, 3.0, (sheet_h, sheet_w, 1)).astype(np.float32)
    ramp_angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1, 1, sheet_w)[None, :] * math.cos(ramp_angle) + np.linspace(-1, 1, sheet_h)[
        :, None
    ] * math.sin(ramp_angle)
    sheet *= (1.0 + rng.uniform(0.03, 0.1) * ramp.astype(np.float32))[..., None]

    pad = int(0.5 * FACE_PX)
    rgb = np.zeros((sheet_h + 2 * pad, sheet_w + 2 * pad, 3), np.float32)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    rgb[pad : pad + sheet_h, pad : pad + sheet_w] = sheet
    alpha[pad : pad + sheet_h, pad : pad + sheet_w] = 1.0
    cv2.rectangle(rgb, (pad, pad), (pad + sheet_w - 1, pad + sheet_h - 1), (paper * 0.8).tolist(), 1)
    _fingers_on_edges(rgb, alpha, rng, (pad, pad, pad + sheet_w, pad + sheet_h), FACE_PX)
    face_center = (pad + bl + (0.5 + margin[0]) * FACE_PX, pad + bt + (0.5 + margin[1]) * FACE_PX)
    return _finish(rgb, alpha, face_center, FACE_PX)


def replay_layer(src: FaceSource, rng: np.random.Generator) -> Layer:
    """The photo on a phone or tablet screen: gamma and colour cast, RGB subpixel grid (which
    aliases into moire once resampled), moire bands, glare, and a dark bezel inside a 1.6x crop
    (but for a close-up)."""
    margin = _photo_margin(rng, REPLAY["margin"])
    photo = portrait(src, rng, margin)
    up = SCREEN_UPSAMPLE
    photo = cv2.resize(photo, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
    sh, sw = photo.shape[:2]
    cast = (
        np.array([1.0, 1.0, 1.0], np.float32)
        + rng.uniform(-0.06, 0.06, 3).astype(np.float32)
        + np.array([-0.04, 0.0, 0.07], np.float32)
    )
    screen: np.ndarray = 255.0 * (photo / 255.0) ** rng.uniform(*REPLAY["gamma"]) * cast * rng.uniform(1.0, 1.15)

    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    stripe = np.full((sh, sw, 3), 0.35, np.float32)
    col = np.arange(sw) % 3
    for ch in range(3):
        stripe[:, col == ch, ch] = 1.0
    stripe[np.arange(sh) % 3 == 2] *= 0.55
    grid = rng.uniform(*REPLAY["grid"])
    screen *= (1.0 - grid) + grid * stripe * 1.55

    angle = rng.uniform(0, np.pi)
    period = rng.uniform(*REPLAY["moire_period"]) * up
    wave = rng.uniform(2.0, 6.0) * up
    phase = (
        xx * math.cos(angle)
        + yy * math.sin(angle)
        + wave * np.sin(2 * np.pi * (yy * math.cos(angle) - xx * math.sin(angle)) / (period * 4))
    ) * (2 * np.pi / period)
    screen *= (1.0 + rng.uniform(*REPLAY["moire"]) * np.cos(phase))[..., None]

    gx, gy = rng.uniform(0.1, 0.9) * sw, rng.uniform(0.1, 0.9) * sh
    glare = np.exp(
        -(((xx - gx) / (rng.uniform(0.15, 0.4) * sw)) ** 2 + ((yy - gy) / (rng.uniform(0.1, 0.3) * sh)) ** 2)
    )
    screen += (rng.uniform(*REPLAY["glare"]) * glare)[..., None]
    screen = cv2.GaussianBlur(screen, (0, 0), rng.uniform(*REPLAY["blur"]) * up)  # the camera's focus

    bezel = (rng.uniform(*REPLAY["bezel"], 4) * FACE_PX * up).astype(int)
    bl, bt, br, bb = bezel
    dev_h, dev_w = sh + bt + bb, sw + bl + br
    pad = int(0.45 * FACE_PX * up)
    rgb = np.zeros((dev_h + 2 * pad, dev_w + 2 * pad, 3), np.float32)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    body = np.zeros(rgb.shape[:2], np.float32)
    radius = int(min(bezel) * 1.5 + 4)
    cv2.rectangle(body, (pad + radius, pad), (pad + dev_w - radius, pad + dev_h), (1.0,), -1)
    cv2.rectangle(body, (pad, pad + radius), (pad + dev_w, pad + dev_h - radius), (1.0,), -1)
    for corner in (
        (pad + radius, pad + radius),
        (pad + dev_w - radius, pad + radius),
        (pad + radius, pad + dev_h - radius),
        (pad + dev_w - radius, pad + dev_h - radius),
    ):
        cv2.circle(body, corner, radius, (1.0,), -1, cv2.LINE_AA)
    bezel_col = np.float32(rng.uniform(8, 40)) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    bezel_img = bezel_col + 25.0 * np.linspace(0, 1, rgb.shape[1], dtype=np.float32)[None, :, None] * rng.uniform(
        0.2, 1.0
    )
    _paint(rgb, alpha, _soft(body, 1.0), bezel_img)
    edge = np.zeros_like(body)
    cv2.rectangle(edge, (pad, pad), (pad + dev_w, pad + dev_h), (1.0,), max(2, int(up)))
    _paint(rgb, None, _soft(edge * body, 1.0) * rng.uniform(0.1, 0.35), 255.0)
    rgb[pad + bt : pad + bt + sh, pad + bl : pad + bl + sw] = screen
    if rng.random() < 0.5:
        _fingers_on_edges(rgb, alpha, rng, (pad, pad, pad + dev_w, pad + dev_h), FACE_PX * up)
    face_center = (pad + bl + (0.5 + margin[0]) * FACE_PX * up, pad + bt + (0.5 + margin[1]) * FACE_PX * up)
    return _finish(rgb, alpha, face_center, FACE_PX * up)
